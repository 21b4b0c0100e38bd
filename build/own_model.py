"""A user's own ONNX image classifier, served through the same pre/post steps as ours.

    maas build image_classifier --onnx pets.onnx --labels pets.txt --name pets \
        --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225

The ONNX must take one FP32 input [N, 3, H, W] (RGB, a fixed H and W, the batch axis free) and
give one FP32 output [N, classes], one column per line of the labels file; anything else is
refused with one error naming the tensor and the shape expected, before anything is written.
Its tensors are renamed to PIXELS and LOGITS (the names our steps use) in a copy. It is served
as `NAME` (an ensemble) over `NAME_preprocess`, `NAME_model` and `NAME_postprocess`, with the
normalisation given (default: pixels scaled to 0..1).

There is no held-out set of the user's, so the gate is fidelity: each variant's top-1 on real
images (scikit-learn's digits at the model's input size) must agree with the source ONNX's
own on all but `tolerance` points of them. INT8 would need the user's data to calibrate on,
so only fp32/fp16 variants are built.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from PIL import Image

from maas import catalog
from maas import contract as C
from maas.build.candidates import CoreData
from maas.build.gate import Run, Verdict, in_batches
from maas.build.variants import Variant
from maas.transforms import Preprocessing, normalize

VARIANTS = ("onnx", "trt-fp32", "trt-fp16")
RESERVED = {C.ENSEMBLE, C.FORECASTER}


class ContractError(ValueError):
    """The ONNX does not fit the family's contract; the message names the tensor."""


def _shape(value: onnx.ValueInfoProto) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def check_contract(model: onnx.ModelProto, labels: list[str]) -> tuple[int, int]:
    """(height, width) of an ONNX that fits: FP32 [N, 3, H, W] -> FP32 [N, len(labels)]."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    fp32 = onnx.TensorProto.FLOAT
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ContractError(f"expected one input FP32 [N, 3, H, W], got {len(inputs)}: {names}")
    [image], outputs = inputs, list(model.graph.output)
    shape = _shape(image)
    if (
        image.type.tensor_type.elem_type != fp32
        or len(shape) != 4
        or shape[1] != 3
        or not all(isinstance(d, int) and d > 0 for d in shape[2:])
    ):
        raise ContractError(
            f"input {image.name!r}: expected FP32 [N, 3, H, W] with a fixed H and W, got "
            f"{onnx.TensorProto.DataType.Name(image.type.tensor_type.elem_type)} {shape}"
        )
    if len(outputs) != 1:
        raise ContractError(f"expected one output FP32 [N, {len(labels)}], got {len(outputs)}")
    [logits] = outputs
    out = _shape(logits)
    if logits.type.tensor_type.elem_type != fp32 or len(out) != 2 or out[1] != len(labels):
        raise ContractError(
            f"output {logits.name!r}: expected FP32 [N, {len(labels)}] (one column per label "
            f"in the labels file), got "
            f"{onnx.TensorProto.DataType.Name(logits.type.tensor_type.elem_type)} {out}"
        )
    return int(shape[2]), int(shape[3])


def renamed(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy whose input is PIXELS and output LOGITS, every reference to them renamed."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    initializers = {i.name for i in model.graph.initializer}
    [image] = [i for i in model.graph.input if i.name not in initializers]
    [logits] = model.graph.output
    names = {image.name: C.PIXELS, logits.name: C.LOGITS}
    for node in model.graph.node:
        node.input[:] = [names.get(n, n) for n in node.input]
        node.output[:] = [names.get(n, n) for n in node.output]
    image.name, logits.name = C.PIXELS, C.LOGITS
    return model


def prepare(
    source: Path,
    labels_file: Path,
    name: str,
    mean: tuple[float, float, float],
    std: tuple[float, float, float],
    scratch: Path,
    max_pixels: int,
    default_top_k: int,
):
    """(pipeline, gate data, the renamed ONNX to build from); raises ContractError."""
    if name in RESERVED or not name.replace("_", "").isalnum():
        raise ContractError(f"--name {name!r}: letters, digits and _, not one of ours")
    labels = [line for line in labels_file.read_text().splitlines() if line.strip()]
    model = onnx.load(str(source))
    height, width = check_contract(model, labels)
    onnx_path = scratch / "model.onnx"
    onnx.save(renamed(model), str(onnx_path))
    pre = Preprocessing(height, width, tuple(mean), tuple(std), max_pixels)
    pipeline = catalog.image_classifier(pre, labels, default_top_k, name=name)
    return pipeline, fidelity_data(onnx_path, pipeline.core, pre), onnx_path


def fidelity_data(onnx_path: Path, core, pre: Preprocessing) -> CoreData:
    from maas.training.data import load_digits

    images = load_digits(seed=0).test_x
    if images.shape[1:3] != (pre.height, pre.width):
        images = np.stack(
            [np.asarray(Image.fromarray(x).resize((pre.width, pre.height))) for x in images]
        )
    heldout = {C.PIXELS: normalize(images, pre.mean, pre.std)}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    source = session.run([C.LOGITS], heldout)[0].argmax(1)

    def gate(run: Run, variant: Variant, tolerance: float | None) -> Verdict:
        agree = float((in_batches(run, heldout)[C.LOGITS].argmax(1) == source).mean())
        return Verdict(
            variant=variant.name,
            metric="top-1 agreement with the source ONNX",
            reference=1.0,
            value=agree,
            drop=(1.0 - agree) * 100,
            tolerance=variant.tolerance if tolerance is None else tolerance,
        )

    return CoreData(core, calibration=heldout, sample=heldout, gate=gate,
                    record={"fidelity_images": len(images)})  # fmt: skip


def build_own_onnx(
    source: str | Path,
    labels_file: str | Path,
    target: str | Path,
    name: str,
    mean=(0.0, 0.0, 0.0),
    std=(1.0, 1.0, 1.0),
    opts=None,
    build=None,
) -> Path:
    """Check, rename, gate and build a user's ONNX into `target` (nothing written on error)."""
    from maas.build import manifest
    from maas.build.configs import ServingOptions
    from maas.build.repository import BuildOptions, build_pipelines

    opts, build = opts or ServingOptions(), build or BuildOptions()
    source, labels_file = Path(source), Path(labels_file)
    for path in (source, labels_file):
        if not path.is_file():
            raise FileNotFoundError(f"no file at {path}")
    with tempfile.TemporaryDirectory(prefix="maas-own-") as tmp:
        pipeline, data, onnx_path = prepare(
            source, labels_file, name, mean, std, Path(tmp), opts.max_pixels, opts.default_top_k
        )
        record = {"user_onnx": str(source), "user_onnx_sha256": manifest.sha256(source),
                  "labels": str(labels_file)}  # fmt: skip
        return build_pipelines(
            (pipeline,), [(onnx_path, data)], target, opts, build, VARIANTS, record
        )
