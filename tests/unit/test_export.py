"""Export: one ONNX file, dynamic batch, opset >= 17, checked, parity-gated."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from maas.errors import ExportError
from maas.runtime.images import layout, normalize
from maas.training.export import export


def test_onnx_is_one_checked_file_with_dynamic_batch(onnx_path):
    assert sorted(p.name for p in onnx_path.parent.glob("model.onnx*")) == ["model.onnx"]
    model = onnx.load(str(onnx_path))
    onnx.checker.check_model(model, full_check=True)
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param and [d.dim_value for d in dims[1:]] == [3, 32, 32]
    meta = {p.key: p.value for p in model.metadata_props}
    assert "class_names" in meta and "mean" in meta


@pytest.mark.parametrize("batch", [1, 7, 100])
def test_onnx_takes_pixels_and_matches_pytorch_at_any_batch(onnx_path, checkpoint, digits, batch):
    """The served graph takes pixel values and normalises them itself: its logits are those of
    the trained network on the normalised images."""
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run(["LOGITS"], {"PIXELS": layout(digits.test_x[:batch])})[0]
    x = normalize(digits.test_x[:batch], checkpoint.mean, checkpoint.std)
    with torch.inference_mode():
        want = checkpoint.build_model()(torch.from_numpy(x)).numpy()
    assert got.shape == (batch, 10)
    assert np.abs(got - want).max() <= 1e-4


def test_parity_gate_fails_with_the_figure_and_writes_nothing(tmp_path, checkpoint_path, digits):
    out = tmp_path / "model.onnx"
    with pytest.raises(
        ExportError, match=r"max abs LOGITS difference \S+ .* exceeds the tolerance -1"
    ):
        export(checkpoint_path, out, tolerance=-1.0, parity_batch=digits.test_x[:8])
    assert list(tmp_path.iterdir()) == []
