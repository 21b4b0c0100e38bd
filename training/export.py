"""Export the checkpoint to one ONNX file with a dynamic batch axis, gated on parity.

    maas export                       # artifacts/checkpoint.pt -> artifacts/model.onnx

The gate runs ONNX Runtime and PyTorch on a real held-out batch; export fails, writing nothing,
if their logits differ by more than --tolerance (1e-4).
"""

from __future__ import annotations

import json
import logging
import tempfile
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch

from maas.training.checkpoint import Checkpoint, atomic_write
from maas.transforms import normalize

INPUT_NAME = "PIXELS"  # the names the Triton configs use for the classifier's tensors
OUTPUT_NAME = "LOGITS"
OPSET = 18


class ExportError(RuntimeError):
    """The exported graph does not match the PyTorch model."""


def export(
    checkpoint: str | Path,
    out: str | Path,
    tolerance: float = 1e-4,
    parity_batch: np.ndarray | None = None,
) -> float:
    """Write `out` and return the max abs logit difference ORT vs PyTorch on a real batch."""
    ckpt = Checkpoint.load(checkpoint)
    model = ckpt.build_model()
    height, width = ckpt.input_size
    if parity_batch is None:
        parity_batch = ckpt.load_dataset().test_x[:64]
    x = normalize(parity_batch, ckpt.mean, ckpt.std)

    batch = torch.export.Dim("batch", min=1, max=4096)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The exporter's chatter (torchvision absent, pytree deprecations) is not ours to fix.
        warnings.simplefilter("ignore", FutureWarning)
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            (torch.zeros(2, 3, height, width),),
            str(raw),
            input_names=[INPUT_NAME],
            output_names=[OUTPUT_NAME],
            dynamic_shapes=({0: batch},),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one self-contained file: a small CNN fits easily
            verbose=False,
        )
        proto = onnx.load(str(raw))
    _add_metadata(proto, ckpt)
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    onnx_logits = session.run([OUTPUT_NAME], {INPUT_NAME: x})[0]
    with torch.inference_mode():
        torch_logits = model(torch.from_numpy(x)).numpy()
    diff = float(np.abs(onnx_logits - torch_logits).max())
    if not diff <= tolerance:
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree: max abs logit difference {diff:.3g} on "
            f"{len(x)} held-out images exceeds the tolerance {tolerance:g}; nothing written"
        )
    atomic_write(out, lambda f: f.write(data))
    print(f"exported {out} (opset {OPSET}, {len(data) / 1e6:.2f} MB); parity max |diff| {diff:.2e}")
    return diff


def _add_metadata(proto: onnx.ModelProto, ckpt: Checkpoint) -> None:
    # For people and tools that open the .onnx alone; the pipeline reads the checkpoint.
    meta = {
        "class_names": json.dumps(ckpt.class_names),
        "mean": json.dumps(ckpt.mean),
        "std": json.dumps(ckpt.std),
        "input_size": json.dumps(ckpt.input_size),
        "producer": "maas",
    }
    for key, value in meta.items():
        proto.metadata_props.add(key=key, value=value)
