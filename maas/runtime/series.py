"""The forecaster's pre- and post-processing: a raw history -> the network's scaled window, and
its scaled forecast -> values with a prediction interval; and the two steps that do it in
Triton, ForecasterPreprocess and ForecasterPostprocess.

Each window is scaled by its own level and spread (loc: its mean, scale: its standard
deviation), so a series that trends past anything seen in training still gives the network
inputs of the size it learned on; the forecast is scaled back with the same two numbers. The
steps call these, and so do training, the gate and the stream (runtime.stream), so what the
server computes is what is tested offline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import names as C
from .errors import Refused
from .metrics import FORECASTS
from .step import StepModel

MIN_SCALE = 1e-3  # a flat window must not divide by zero


class SeriesError(Refused):
    """A history or horizon the forecaster cannot use; the message says why."""


@dataclass(frozen=True)
class Window:
    """The model's input size and output horizon, and the prediction interval's quantiles of
    validation residuals (in scaled units), one per forecast step."""

    length: int
    horizon: int
    lower: tuple[float, ...] = ()
    upper: tuple[float, ...] = ()


def check_history(history: np.ndarray, length: int) -> np.ndarray:
    """A 1-D float history of at least `length` finite values, as float64; raises SeriesError."""
    values = np.asarray(history, dtype=np.float64).reshape(-1)
    if values.size == 0:
        raise SeriesError("empty history: 0 values", "empty")
    bad = ~np.isfinite(values)
    if bad.any():
        first = int(np.argmax(bad))
        raise SeriesError(
            f"history value {first} is {values[first]}: only finite numbers", "not_finite"
        )
    if values.size < length:
        raise SeriesError(
            f"history of {values.size} values: at least {length} are needed", "too_short"
        )
    return values


def scale_window(history: np.ndarray, length: int) -> tuple[np.ndarray, float, float]:
    """The last `length` values of a checked history -> (scaled float32 window, loc, scale)."""
    window = check_history(history, length)[-length:]
    loc = float(window.mean())
    scale = max(float(window.std()), MIN_SCALE)
    return ((window - loc) / scale).astype(np.float32), loc, scale


def check_horizon(horizon: int, limit: int) -> int:
    if not 1 <= horizon <= limit:
        raise SeriesError(f"horizon must be between 1 and {limit}, got {horizon}", "bad_horizon")
    return int(horizon)


def unscale(scaled: np.ndarray, loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Scaled forecasts (N, H) and each row's loc, scale (N,) or (N, 1) -> values (N, H)."""
    loc = np.asarray(loc, dtype=np.float64).reshape(-1, 1)
    scale = np.asarray(scale, dtype=np.float64).reshape(-1, 1)
    return scaled.astype(np.float64) * scale + loc


def forecast(
    scaled: np.ndarray, loc: np.ndarray, scale: np.ndarray, window: Window
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(values, lower, upper), each (N, H) float32: the interval is the validation residuals'
    quantiles around each step's forecast, in the window's own scale."""
    lower = np.asarray(window.lower, dtype=np.float64)
    upper = np.asarray(window.upper, dtype=np.float64)
    values = unscale(scaled, loc, scale)
    with np.errstate(over="ignore"):  # beyond float32 becomes inf, which check_finite refuses
        return (
            values.astype(np.float32),
            unscale(scaled + lower, loc, scale).astype(np.float32),
            unscale(scaled + upper, loc, scale).astype(np.float32),
        )


def check_finite(values: tuple[np.ndarray, ...], tensor: str) -> None:
    """Refuse forecasts that overflowed float32 (a finite history of values near ±3.4e38),
    naming the input that caused them."""
    if not all(np.isfinite(v).all() for v in values):
        raise SeriesError(
            f"{tensor}: its forecast is beyond float32's range (±3.4e38): scale the series down",
            "overflow",
        )


def windows(series: np.ndarray, length: int, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """Every (history window, following `horizon` values) pair of a series, in order."""
    count = len(series) - length - horizon + 1
    if count < 1:
        raise SeriesError(
            f"a series of {len(series)} values has no {length}+{horizon} window", "too_short"
        )
    starts = np.arange(count)[:, None]
    x = series[starts + np.arange(length)]
    y = series[starts + length + np.arange(horizon)]
    return x, y


def floats(text: str) -> tuple[float, ...]:
    """A config parameter of numbers (comma-separated, as maas.spec.csv writes them)."""
    return tuple(float(v) for v in text.split(","))


class ForecasterPreprocess(StepModel):
    """HISTORY (a raw series) -> the network's scaled WINDOW and the two numbers that undo the
    scaling (LOC, SCALE). Each row of a request is one series; a request whose history is
    empty, too short, or holds NaN/inf gets its own INVALID_ARG error naming the problem."""

    PARAMETERS = ("length",)
    REFUSED, TENSOR = SeriesError, C.HISTORY

    def setup(self) -> None:
        self.length = int(self.params["length"])

    def answer(self, request):
        scaled = [scale_window(row, self.length) for row in self.input(request, C.HISTORY)]
        return [
            self.pb.Tensor(C.WINDOW, np.stack([w for w, _, _ in scaled])[..., None]),
            self.pb.Tensor(C.LOC, np.array([[loc] for _, loc, _ in scaled], np.float32)),
            self.pb.Tensor(C.SCALE, np.array([[s] for _, _, s in scaled], np.float32)),
        ]


class ForecasterPostprocess(StepModel):
    """The network's SCALED_FORECAST with its window's LOC and SCALE, and an optional HORIZON
    -> FORECAST, LOWER, UPPER in the series' units. Each request keeps its own horizon (1 to
    the network's; the network's when not given)."""

    PARAMETERS = ("lower", "upper")
    REFUSED = SeriesError  # its messages name HORIZON or HISTORY

    def setup(self) -> None:
        [steps] = self.dims(C.SCALED_FORECAST)
        lower, upper = floats(self.params["lower"]), floats(self.params["upper"])
        self.window = Window(length=0, horizon=steps, lower=lower, upper=upper)

    def _horizon(self, request) -> int:
        given = self.input(request, C.HORIZON)
        if given is None:
            return self.window.horizon
        values = np.unique(given)
        if len(values) != 1:
            raise SeriesError(f"{C.HORIZON}: must be the same for every series of a request")
        try:
            return check_horizon(int(values[0]), self.window.horizon)
        except SeriesError as e:
            raise SeriesError(f"{C.HORIZON}: {e}", "bad_horizon") from None

    def answer(self, request):
        k = self._horizon(request)
        scaled, loc, scale = (self.input(request, n) for n in (C.SCALED_FORECAST, C.LOC, C.SCALE))
        values = tuple(v[:, :k] for v in forecast(scaled, loc, scale, self.window))
        check_finite(values, C.HISTORY)
        self.metrics.count(FORECASTS, len(scaled))
        names = (C.FORECAST, C.LOWER, C.UPPER)
        return [self.pb.Tensor(n, v) for n, v in zip(names, values, strict=True)]
