"""Triton Python-backend model under the sequence batcher: one OBSERVATION per request ->
NEXT (the next value's forecast, with NEXT_LOWER/NEXT_UPPER) and HELD.

The state of a sequence is its last `length` observations, kept here by correlation ID: START
begins it afresh, END frees it after answering, and a sequence silent for `idle_seconds` is
freed too (Triton ends it then; the model is not told, so it checks at every call). Until a
whole window is held, NEXT is NaN. Every full window of a batch goes through one ONNX Runtime
run of the forecaster's network, with maas.series scaling as the forecaster ensemble does.
"""

import collections
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from maas import contract as C
from maas.adapter import StepMetrics, attempt_each
from maas.metrics import SEQUENCES, Refused
from maas.series import Window, forecast, scale_window
from maas.spec import floats


def _flag(request, name: str):
    tensor = pb_utils.get_input_tensor_by_name(request, name)
    return None if tensor is None else tensor.as_numpy().reshape(-1)[0]


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.length = int(params["length"])
        self.idle = float(params["idle_seconds"])
        lower, upper = floats(params["lower"]), floats(params["upper"])
        self.window = Window(self.length, 1, lower, upper)
        model = Path(args["model_repository"]) / "model.onnx"
        self.session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
        self.sequences = {}  # correlation ID -> [deque of observations, last seen]
        self.metrics = StepMetrics(pb_utils, args["model_name"])

    def _observe(self, request, now: float):
        """Record the request's observation; its sequence's values, a copy."""
        sequence = int(_flag(request, "CORRID"))
        value = float(
            pb_utils.get_input_tensor_by_name(request, C.OBSERVATION).as_numpy().ravel()[0]
        )
        if not np.isfinite(value):
            raise Refused(
                f"{C.OBSERVATION}: {value} in sequence {sequence}: only finite numbers",
                "not_finite",
            )
        if _flag(request, "START"):
            self.sequences[sequence] = [collections.deque(maxlen=self.length), now]
        if sequence not in self.sequences:
            raise Refused(
                f"sequence {sequence} holds nothing here (it ended or was idle over "
                f"{self.idle:g} s): send START again",
                "no_sequence",
            )
        state = self.sequences[sequence]
        state[0].append(value)
        state[1] = now
        values = np.array(state[0])
        if _flag(request, "END"):
            del self.sequences[sequence]
        return values

    def execute(self, requests):
        now = time.monotonic()
        for sequence, (_, seen) in list(self.sequences.items()):
            if now - seen > self.idle:
                del self.sequences[sequence]
        responses, seen = attempt_each(
            pb_utils, requests, lambda r: self._observe(r, now), metrics=self.metrics
        )
        held = {i: len(values) for i, values in seen.items()}
        full = {i: scale_window(v, self.length) for i, v in seen.items() if len(v) == self.length}
        nan = np.full((1, 1), np.nan, np.float32)
        answers = {i: (nan, nan, nan) for i in held}
        if full:
            order = list(full)
            windows = np.stack([full[i][0] for i in order])[..., None]
            [scaled] = self.session.run([C.SCALED_FORECAST], {C.WINDOW: windows})
            locs = np.array([full[i][1] for i in order])
            scales = np.array([full[i][2] for i in order])
            values, lower, upper = forecast(scaled[:, :1], locs, scales, self.window)
            for row, i in enumerate(order):
                answers[i] = (values[row : row + 1], lower[row : row + 1], upper[row : row + 1])
        for i, count in held.items():
            names = (C.NEXT, C.NEXT_LOWER, C.NEXT_UPPER)
            tensors = [pb_utils.Tensor(n, a) for n, a in zip(names, answers[i], strict=True)]
            tensors.append(pb_utils.Tensor(C.HELD, np.array([[count]], np.int32)))
            responses[i] = pb_utils.InferenceResponse(tensors)
        self.metrics.set(SEQUENCES, len(self.sequences))
        return responses
