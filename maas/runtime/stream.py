"""ForecasterStream: one OBSERVATION per request in a sequence -> NEXT (the next value's
forecast, with NEXT_LOWER/NEXT_UPPER), HELD and READY.

Clients speak Triton's sequence protocol: a sequence ID (an integer or a string) and START/END
flags on the request, which this step reads from each request; Triton's sequence batcher is
not involved (maas.spec.Sequences says why). The state of a sequence is its last `length`
observations, in a bounded table (runtime.sequences): START begins it afresh, evicting the
least recently used sequence when the table is full; END frees it after answering; one
silent for `idle_seconds` is freed. Each tenant's sequences are its own (the front door names
the tenant, maas.tenants): another client sending the same ID reaches a sequence of its own.
Until a whole window is held, READY is false and NEXT 0 (not NaN: strict JSON has none).
Every full window of a batch goes to the forecaster's own network, the gated and versioned
core model named by the parameter `network`, in one call through Triton (BLS), with
runtime.series scaling as the forecaster ensemble does: one network per family, and no ONNX
Runtime in this step's Python.

A stream's state lives in this stub: a dead stub loses it, and the sequences it held start
afresh after the watchdog's reload.
"""

from __future__ import annotations

import time

import numpy as np

from . import names as C
from .errors import Refused
from .metrics import SEQUENCES
from .sequences import SequenceTable
from .series import SeriesError, Window, check_finite, floats, forecast, scale_window
from .step import StepModel, failure, refusal


class ForecasterStream(StepModel):
    PARAMETERS = ("length", "lower", "upper", "network", C.IDLE_SECONDS, C.MAX_SEQUENCES)

    def setup(self) -> None:
        self.length = int(self.params["length"])
        self.network = self.params["network"]
        lower, upper = floats(self.params["lower"]), floats(self.params["upper"])
        self.window = Window(self.length, 1, lower, upper)
        self.sequences = SequenceTable(
            self.length, int(self.params[C.MAX_SEQUENCES]), float(self.params[C.IDLE_SECONDS])
        )

    def _observe(self, request, now: float) -> np.ndarray:
        """Record the request's observation; its sequence's values, a copy."""
        sequence = request.correlation_id()  # an int or a str, as the client sent it
        owner = self.tenant(request)
        flags = request.flags()
        start = bool(flags & self.pb.TRITONSERVER_REQUEST_FLAG_SEQUENCE_START)
        end = bool(flags & self.pb.TRITONSERVER_REQUEST_FLAG_SEQUENCE_END)
        value = float(self.input(request, C.OBSERVATION).ravel()[0])
        if not np.isfinite(value):
            if end:  # refused, but the sequence still ends here
                self.sequences.end(sequence, owner)
            raise Refused(
                f"{C.OBSERVATION}: {value} in sequence {sequence}: only finite numbers",
                "not_finite",
            )
        return self.sequences.observe(sequence, value, start, end, now, owner)

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
        self.sequences.sweep(now)
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
