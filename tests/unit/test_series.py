"""maas.runtime.series: the forecaster's pure pre/post-processing, and every refusal."""

from __future__ import annotations

import numpy as np
import pytest

from maas.runtime.series import (
    SeriesError,
    Window,
    check_finite,
    check_horizon,
    forecast,
    scale_window,
    unscale,
    windows,
)


def test_scale_window_uses_the_last_values_and_round_trips():
    history = np.concatenate([np.full(10, 1000.0), np.arange(8, dtype=float)])  # old values: off
    scaled, loc, scale = scale_window(history, 8)
    assert scaled.dtype == np.float32 and scaled.shape == (8,)
    assert loc == pytest.approx(3.5) and scale == pytest.approx(np.arange(8).std())
    np.testing.assert_allclose(scaled.mean(), 0, atol=1e-6)
    np.testing.assert_allclose(unscale(scaled[None], [loc], [scale])[0], np.arange(8), atol=1e-5)


def test_flat_window_does_not_divide_by_zero():
    scaled, loc, scale = scale_window(np.full(6, 7.0), 6)
    assert loc == 7.0 and scale > 0 and np.all(scaled == 0)


@pytest.mark.parametrize(
    ("history", "message"),
    [
        ([], "empty history: 0 values"),
        ([1.0, float("nan"), 3.0, 4.0], "history value 1 is nan"),
        ([1.0, 2.0, float("inf"), 4.0], "history value 2 is inf"),
        ([1.0, 2.0, 3.0], "history of 3 values: at least 4 are needed"),
    ],
)
def test_bad_history_named(history, message):
    with pytest.raises(SeriesError, match=message):
        scale_window(np.array(history), 4)


@pytest.mark.parametrize("horizon", [0, -1, 13])
def test_horizon_outside_the_model_refused(horizon):
    with pytest.raises(SeriesError, match=rf"between 1 and 12, got {horizon}"):
        check_horizon(horizon, 12)
    assert check_horizon(12, 12) == 12


def test_forecast_unscales_values_and_interval_per_row():
    window = Window(4, 3, lower=(-1.0, -2.0, -3.0), upper=(1.0, 2.0, 3.0))
    scaled = np.array([[0.0, 1.0, 2.0], [1.0, 1.0, 1.0]], np.float32)
    values, lower, upper = forecast(scaled, np.array([10.0, 100.0]), np.array([2.0, 0.5]), window)
    np.testing.assert_allclose(values, [[10, 12, 14], [100.5, 100.5, 100.5]])
    np.testing.assert_allclose(lower, [[8, 8, 8], [100, 99.5, 99]])
    np.testing.assert_allclose(upper, [[12, 16, 20], [101, 101.5, 102]])
    assert values.dtype == lower.dtype == upper.dtype == np.float32


def test_windows_pair_each_history_with_what_follows():
    x, y = windows(np.arange(10.0), 4, 3)
    assert x.shape == (4, 4) and y.shape == (4, 3)
    assert x[1].tolist() == [1, 2, 3, 4] and y[1].tolist() == [5, 6, 7]
    with pytest.raises(SeriesError, match="no 8\\+3 window"):
        windows(np.arange(10.0), 8, 3)


def test_a_forecast_beyond_float32_is_refused_naming_the_input():
    """A finite window near float32's limit: its interval's upper bound overflows to inf."""
    history = np.array([3.4e38] * 47 + [-3.4e38])
    _, loc, scale = scale_window(history, 48)
    values = forecast(np.array([[1.0]]), [loc], [scale], Window(48, 1, (-1.0,), (1.0,)))
    assert not np.isfinite(values[2]).all()  # what would have been answered with status OK
    with pytest.raises(SeriesError, match="HISTORY: its forecast is beyond float32's range"):
        check_finite(values, "HISTORY")
    check_finite(forecast(np.array([[1.0]]), [0.0], [1.0], Window(48, 1, (-1.0,), (1.0,))), "X")
