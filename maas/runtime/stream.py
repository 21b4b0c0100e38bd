"""ForecasterStream: one OBSERVATION per request under a Triton sequence -> NEXT (the next
value's forecast, with NEXT_LOWER/NEXT_UPPER), HELD and READY.

The state of a sequence is its last `length` observations, kept here by correlation ID (an
integer or a string, read from the request itself, not from a CORRID control): START begins it
afresh, END frees it after answering, and a sequence silent for `idle_seconds` is freed too
(Triton ends it then; the model is not told, so it checks at every call). Until a whole window
is held, READY is false and NEXT 0 (not NaN: strict JSON has none). Every full window of a
batch goes to the forecaster's own network, the gated and versioned core model named by the
parameter `network`, in one call through Triton (BLS), with runtime.series scaling as the
forecaster ensemble does: one network per family, and no ONNX Runtime in this step's Python.

A stream's state lives in this stub: a dead stub loses it, and the sequences it held start
afresh after the watchdog's reload.
"""

from __future__ import annotations

import collections
import time

import numpy as np

from . import names as C
from .errors import Refused
from .metrics import SEQUENCES
from .series import SeriesError, Window, check_finite, floats, forecast, scale_window
from .step import StepModel, failure, refusal


class ForecasterStream(StepModel):
    PARAMETERS = ("length", "lower", "upper", "idle_seconds", "network")

    def setup(self) -> None:
        self.length = int(self.params["length"])
        self.idle = float(self.params["idle_seconds"])
        self.network = self.params["network"]
        lower, upper = floats(self.params["lower"]), floats(self.params["upper"])
        self.window = Window(self.length, 1, lower, upper)
        self.sequences: dict = {}  # correlation ID -> [deque of observations, last seen]

    def _flag(self, request, name: str):
        values = self.input(request, name)
        return None if values is None else values.reshape(-1)[0]

    def _observe(self, request, now: float) -> np.ndarray:
        """Record the request's observation; its sequence's values, a copy."""
        sequence = request.correlation_id()  # an int or a str, as the client sent it
        value = float(self.input(request, C.OBSERVATION).ravel()[0])
        if not np.isfinite(value):
            if self._flag(request, "END"):  # refused, but the sequence still ends here
                self.sequences.pop(sequence, None)
            raise Refused(
                f"{C.OBSERVATION}: {value} in sequence {sequence}: only finite numbers",
                "not_finite",
            )
        if self._flag(request, "START"):
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
        if self._flag(request, "END"):
            del self.sequences[sequence]
        return values

    def _scaled_forecasts(self, windows: np.ndarray) -> np.ndarray:
        """The network's scaled forecasts for (N, length, 1) windows, through Triton."""
        request = self.pb.InferenceRequest(
            model_name=self.network,
            requested_output_names=[C.SCALED_FORECAST],
            inputs=[self.pb.Tensor(C.WINDOW, windows)],
        )
        response = request.exec()
        if response.has_error():
            raise RuntimeError(f"{self.network}: {response.error().message()}")
        return self.pb.get_output_tensor_by_name(response, C.SCALED_FORECAST).as_numpy()

    def execute(self, requests):
        now = time.monotonic()
        for sequence, (_, seen) in list(self.sequences.items()):
            if now - seen > self.idle:
                del self.sequences[sequence]
        responses, seen = self.attempt_each(requests, lambda r: self._observe(r, now))
        held = {i: len(values) for i, values in seen.items()}
        full = {i: scale_window(v, self.length) for i, v in seen.items() if len(v) == self.length}
        zero = np.zeros((1, 1), np.float32)
        answers = {i: (zero, zero, zero) for i in held}
        if full:
            order = list(full)
            windows = np.stack([full[i][0] for i in order])[..., None]
            try:
                scaled = self._scaled_forecasts(windows)
            except Exception as e:  # the network's failure is every full window's
                for i in order:
                    responses[i] = failure(self.pb, e, self.metrics)
                    del held[i]
            else:
                locs = np.array([full[i][1] for i in order])
                scales = np.array([full[i][2] for i in order])
                values, lower, upper = forecast(scaled[:, :1], locs, scales, self.window)
                for row, i in enumerate(order):
                    answers[i] = (values[row : row + 1], lower[row : row + 1], upper[row : row + 1])
                    try:  # one sequence's overflow is its own request's refusal
                        check_finite(answers[i], C.OBSERVATION)
                    except SeriesError as e:
                        responses[i] = refusal(self.pb, e, self.metrics)
                        del held[i]
        for i, count in held.items():
            responses[i] = self.respond(
                **dict(zip((C.NEXT, C.NEXT_LOWER, C.NEXT_UPPER), answers[i], strict=True)),
                **{C.HELD: np.array([[count]], np.int32)},
                **{C.READY: np.array([[count == self.length]], np.bool_)},
            )
        self.metrics.set(SEQUENCES, len(self.sequences))
        return responses
