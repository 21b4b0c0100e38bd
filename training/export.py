"""Export the checkpoint to one ONNX file with a dynamic batch axis, gated on parity.

    maas export                       # artifacts/checkpoint.pt -> artifacts/model.onnx

The exported network takes RGB pixel values (0..255, float32 NCHW) and normalises them itself
with the checkpoint's mean and std (training/model.Normalized): a client that sends pixels,
ours or Triton's own example clients, needs no constants. The gate runs ONNX Runtime and
PyTorch on a real held-out batch; export fails, writing nothing, if their logits differ by more
than --tolerance (1e-4).
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

from maas.errors import ExportError
from maas.files import atomic_write
from maas.runtime.images import layout
from maas.training.checkpoint import Checkpoint
from maas.training.model import Normalized

INPUT_NAME = "PIXELS"  # the names the Triton configs use for the classifier's tensors
OUTPUT_NAME = "LOGITS"
OPSET = 18


def export(
    checkpoint: str | Path,
    out: str | Path,
    tolerance: float = 1e-4,
    parity_batch: np.ndarray | None = None,
) -> float:
    """Write `out` and return the max abs logit difference ORT vs PyTorch on a real batch."""
    ckpt = Checkpoint.load(checkpoint)
    height, width = ckpt.input_size
    if parity_batch is None:
        parity_batch = ckpt.load_dataset().test_x[:64]
    meta = {
        "class_names": ckpt.class_names,
        "input": "RGB pixel values 0..255, float32 NCHW; normalised in the graph",
        "mean": ckpt.mean,
        "std": ckpt.std,
        "input_size": ckpt.input_size,
    }
    return to_onnx(
        Normalized(ckpt.build_model(), ckpt.mean, ckpt.std),
        {INPUT_NAME: np.zeros((2, 3, height, width), np.float32)},
        OUTPUT_NAME,
        {INPUT_NAME: layout(parity_batch)},
        out,
        tolerance=tolerance,
        metadata=meta,
    )


def to_onnx(
    model: torch.nn.Module,
    example: dict[str, np.ndarray],
    output: str,
    parity: dict[str, np.ndarray],
    out: str | Path,
    *,
    tolerance: float = 1e-4,
    metadata: dict | None = None,
) -> float:
    """Export `model` (named inputs, batch axis dynamic; one named output) to one ONNX file,
    checked with onnx.checker and gated on parity: ONNX Runtime and PyTorch on the real batch
    `parity` must agree to `tolerance` in every output value, or nothing is written."""
    model = model.eval()
    batch = torch.export.Dim("batch", min=1, max=4096)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        # The exporter's chatter (torchvision absent, pytree deprecations) is not ours to fix.
        warnings.simplefilter("ignore", FutureWarning)
        # A GRU's weights are flattened during export; the exporter warns, the graph is right.
        warnings.filterwarnings("ignore", message="The tensor attributes .* during export")
        # Two inputs (the GAN's noise and digit) share the batch axis, as they should.
        warnings.filterwarnings("ignore", message="# The axis name: batch will not be used")
        logging.getLogger("torch.onnx").setLevel(logging.ERROR)
        raw = Path(tmp) / "model.onnx"
        torch.onnx.export(
            model,
            tuple(torch.from_numpy(v) for v in example.values()),
            str(raw),
            input_names=list(example),
            output_names=[output],
            dynamic_shapes=tuple({0: batch} for _ in example),
            opset_version=OPSET,
            dynamo=True,
            external_data=False,  # one self-contained file: our models fit easily
            verbose=False,
        )
        proto = onnx.load(str(raw))
    # For people and tools that open the .onnx alone; the pipeline reads the checkpoint.
    for key, value in {**(metadata or {}), "producer": "maas"}.items():
        proto.metadata_props.add(
            key=key, value=value if isinstance(value, str) else json.dumps(value)
        )
    onnx.checker.check_model(proto, full_check=True)
    data = proto.SerializeToString()

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    got = session.run([output], parity)[0]
    with torch.inference_mode():
        want = model(*(torch.from_numpy(v) for v in parity.values())).numpy()
    diff = float(np.abs(got - want).max())
    rows = len(next(iter(parity.values())))
    if not diff <= tolerance:
        raise ExportError(
            f"ONNX Runtime and PyTorch disagree: max abs {output} difference {diff:.3g} on "
            f"{rows} held-out rows exceeds the tolerance {tolerance:g}; nothing written"
        )
    atomic_write(out, lambda f: f.write(data))
    print(f"exported {out} (opset {OPSET}, {len(data) / 1e6:.2f} MB); parity max |diff| {diff:.2e}")
    return diff
