"""The forecaster's training, export and gate: better than seasonal-naive on held-out months,
one parity-checked ONNX file, and a build that refuses a broken network."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper

from maas.build.repository import BuildOptions, build_repository
from maas.errors import GateError
from maas.runtime import names as C
from maas.training.rnn import load_co2, scaled, seasonal_naive, split


def test_co2_split_in_time_order():
    series = load_co2()
    parts = split(series, 48, 12)
    assert len(series) == 526 and np.isfinite(series).all()
    assert parts["train"].origins.max() + 12 <= parts["val"].origins.min() + 12
    assert parts["val"].origins.max() < parts["test"].origins.min()
    assert len(parts["test"].x) == 68
    # Seasonal-naive repeats the last season: the first step is the value 12 months back.
    assert seasonal_naive(parts["test"].x[:1], 12)[0, 0] == parts["test"].x[0, -12]


def test_gru_beats_seasonal_naive_on_held_out_months(forecaster, forecaster_path):
    m = forecaster.metrics
    assert m["rnn"]["mae"] < m["seasonal_naive"]["mae"]
    assert m["rnn"]["rmse"] < m["seasonal_naive"]["rmse"]
    assert 0 < m["holt_winters"]["mae"] < m["seasonal_naive"]["mae"]
    assert 0 < m["interval"]["coverage"] <= 1
    assert len(forecaster.window["lower"]) == len(forecaster.window["upper"]) == 12
    assert np.all(np.array(forecaster.window["lower"]) < np.array(forecaster.window["upper"]))
    png = forecaster_path.with_name("training_curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("batch", [1, 7, 40])
def test_forecaster_onnx_matches_pytorch(forecaster, forecaster_onnx, batch):
    x = scaled(split(load_co2(), 48, 12)["test"], 48)[0][:batch]
    session = ort.InferenceSession(str(forecaster_onnx), providers=["CPUExecutionProvider"])
    got = session.run([C.SCALED_FORECAST], {C.WINDOW: x})[0]
    with torch.inference_mode():
        want = forecaster.build_model()(torch.from_numpy(x)).numpy()
    assert got.shape == (len(x), 12) and np.abs(got - want).max() <= 1e-4


def test_gate_refuses_a_broken_forecaster_and_writes_nothing(
    tmp_path, forecaster_path, forecaster_onnx
):
    fast = BuildOptions("onnx", speed_seconds=0.05)
    repo = build_repository(forecaster_path, forecaster_onnx, tmp_path / "repo", build=fast,
                            family="forecaster")  # fmt: skip
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    model = onnx.load(str(forecaster_onnx))
    init = max(model.graph.initializer, key=lambda i: numpy_helper.to_array(i).size)
    weights = numpy_helper.to_array(init)
    noisy = weights + np.random.default_rng(0).normal(0, 0.3, weights.shape).astype(weights.dtype)
    init.CopyFrom(numpy_helper.from_array(noisy, init.name))
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(GateError, match=r"test MAE \(ppm\) gate failed for onnx: .* % worse"):
        build_repository(forecaster_path, broken, repo, build=fast, family="forecaster")
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
