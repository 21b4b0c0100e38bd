"""Pure functions of the forecaster's pre- and post-processing: a raw history -> the model's
scaled window, and the model's scaled forecast -> values with a prediction interval.

Each window is scaled by its own level and spread (loc: its mean, scale: its standard
deviation), so a series that trends past anything seen in training still gives the network
inputs of the size it learned on; the forecast is scaled back with the same two numbers. The
Python-backend steps in model_repository/forecaster_* call these, and so do training and the
gate, so what the server computes is what we test offline.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from maas.metrics import Refused

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
    return (
        values.astype(np.float32),
        unscale(scaled + lower, loc, scale).astype(np.float32),
        unscale(scaled + upper, loc, scale).astype(np.float32),
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
