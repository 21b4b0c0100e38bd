"""A user's own ONNX image classifier, as the frameworks export it, served through our steps.

    maas build image_classifier --onnx keras_cnn.onnx --labels digits.txt --name digits
    maas build image_classifier --onnx resnet.onnx --labels imagenet.txt --name resnet \
        --mean 0.485 0.456 0.406 --std 0.229 0.224 0.225
    maas build image_classifier --onnx caffe.onnx --labels l.txt --name c --scale 255

Read from the model (each overridable by the flag named, where the model leaves it open):
- its one image input: channels first `[N, C, H, W]` (PyTorch) or last `[N, H, W, C]` (Keras,
  TensorFlow), C = 3 (RGB) or 1 (grey) (`--layout nchw|nhwc` where both fit); its size H x W
  (`--size H W` where the model leaves it free); a free batch axis;
- what its one output `[N, classes]` holds, judged on real images (scikit-learn's digits at
  the model's size): probabilities when every row is non-negative and sums to 1 (a softmax
  as its last layer, as most Keras classifiers have), logits otherwise (`--outputs
  logits|probabilities`; a Sigmoid's independent probabilities are refused until it is
  given);
- any tensor names.
What its input values mean cannot be read from a graph, so it is said: the model gets
`(pixel / 255 * scale - mean) / std` per channel (`--scale`, default 1: values 0..1; 255:
0..255; `--mean`, `--std`, default 0 and 1).

It is served as `NAME` (an ensemble) over `NAME_preprocess`, `NAME_model` and
`NAME_postprocess`. `NAME_model` is a copy of the ONNX that takes what every served network
takes (RGB pixel values 0..255, float32 NCHW: Triton's own example clients send that) and
does the rest in its graph: grey conversion, the scaling above, the transpose to NHWC. A
probabilities model's scores are served as they are (postprocess's `outputs` parameter), not
through a second softmax. What cannot be served is refused with one line naming what was
found and the flag that would change it, before anything is written.

There is no held-out set of the user's, so the gate is fidelity on those real images: each
variant, served as built, must give the source model's top-1 on all but `tolerance` points of
them AND its scores within SCORE_TOLERANCE. INT8 would need the user's data to calibrate on,
so only fp32/fp16 variants are built.
"""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from maas import catalog
from maas.build.candidates import CoreData
from maas.build.gate import Run, Verdict, in_batches
from maas.build.variants import Variant
from maas.errors import ContractError
from maas.runtime import names as C
from maas.runtime.classify import scores
from maas.runtime.images import Preprocessing, layout

VARIANTS = ("onnx", "trt-fp32", "trt-fp16")
log = logging.getLogger(__name__)
RESERVED = {C.ENSEMBLE, C.FORECASTER}
LAYOUTS = ("nchw", "nhwc")
OUTPUTS = ("logits", "probabilities")
# How far a variant's served scores may be from the source model's, by precision.
SCORE_TOLERANCE = {"fp32": 1e-3, "fp16": 2e-2, "int8": 5e-2}
LUMA = (0.299, 0.587, 0.114)  # ITU-R 601-2, as Pillow's convert("L")


@dataclass(frozen=True)
class Scaling:
    """What the model's input values are: (pixel / 255 * scale - mean) / std per channel."""

    scale: float = 1.0
    mean: tuple[float, ...] = (0.0,)  # one value for every channel, or one per channel
    std: tuple[float, ...] = (1.0,)

    def per_channel(self, channels: int) -> tuple[np.ndarray, np.ndarray]:
        """(multiplier, offset), each float32 (1, channels, 1, 1): x * multiplier - offset."""
        mean, std = (np.asarray(v, np.float32) for v in (self.mean, self.std))
        if mean.size not in (1, channels) or std.size not in (1, channels):
            either = "one value" if channels == 1 else f"one value or {channels}"
            raise ContractError(
                f"--mean and --std take {either} for this {channels}-channel input, got "
                f"{mean.size} and {std.size}"
            )
        if not (np.isfinite(std).all() and (std != 0).all() and np.isfinite(self.scale)):
            raise ContractError("--std must be non-zero and --scale finite")
        shape = (1, channels, 1, 1)
        multiplier = np.broadcast_to(np.float32(self.scale / 255.0) / std, (channels,))
        offset = np.broadcast_to(mean / std, (channels,))
        return multiplier.reshape(shape).astype(np.float32), offset.reshape(shape).astype(
            np.float32
        )


@dataclass(frozen=True)
class Reading:
    """What maas read from a user's ONNX (flags applied)."""

    input: str
    output: str
    layout: str  # "nchw" | "nhwc"
    channels: int  # 3 (RGB) or 1 (grey)
    height: int
    width: int
    outputs: str = ""  # "logits" | "probabilities"; "" until judged on images


def _shape(value: onnx.ValueInfoProto) -> list[int | str]:
    dims = value.type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") else (d.dim_param or "?") for d in dims]


def _type(value: onnx.ValueInfoProto) -> str:
    return TensorProto.DataType.Name(value.type.tensor_type.elem_type)


def _fixed(dim) -> bool:
    return isinstance(dim, int) and dim > 0


def read_model(
    model: onnx.ModelProto,
    labels: list[str],
    layout: str | None = None,
    size: tuple[int, int] | None = None,
) -> Reading:
    """The input's layout, channels and size, and the output's name, or ContractError."""
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs)
        raise ContractError(f"expected one image input, got {len(inputs)}: {names}")
    [image] = inputs
    shape = _shape(image)
    found = f"input {image.name!r} is {_type(image)} {shape}"
    if image.type.tensor_type.elem_type != TensorProto.FLOAT or len(shape) != 4:
        raise ContractError(f"{found}: expected FLOAT [N, C, H, W] or [N, H, W, C], C 3 or 1")
    if _fixed(shape[0]):
        raise ContractError(
            f"{found}: its batch axis is fixed at {shape[0]}; export it with a free batch "
            "axis (torch.onnx: dynamic_shapes; tf2onnx: an input_signature with None)"
        )
    fits = [way for way in LAYOUTS if _channels(shape, way) in (1, 3)]
    if layout is not None:
        if layout not in fits:
            raise ContractError(f"{found}: not {layout.upper()} with 3 or 1 channels")
        fits = [layout]
    if not fits:
        raise ContractError(f"{found}: neither [N, C, H, W] nor [N, H, W, C] with C 3 or 1")
    if len(fits) > 1:
        raise ContractError(f"{found}: channels first or last? say which with --layout nchw|nhwc")
    [way] = fits
    height, width = (shape[2], shape[3]) if way == "nchw" else (shape[1], shape[2])
    if size is not None:
        for given, dim in zip(size, (height, width), strict=True):
            if _fixed(dim) and dim != given:
                raise ContractError(f"{found}: --size {size[0]} {size[1]} does not fit it")
        height, width = size
    if not (_fixed(height) and _fixed(width)):
        raise ContractError(f"{found}: its size is free; give the size to serve with --size H W")
    if len(model.graph.output) != 1:
        raise ContractError(
            f"expected one output [N, {len(labels)}], got {len(model.graph.output)}"
        )
    [out] = model.graph.output
    out_shape = _shape(out)
    if (
        out.type.tensor_type.elem_type != TensorProto.FLOAT
        or len(out_shape) != 2
        or (_fixed(out_shape[1]) and out_shape[1] != len(labels))
    ):
        raise ContractError(
            f"output {out.name!r}: expected FLOAT [N, {len(labels)}] (one column per label "
            f"in the labels file), got {_type(out)} {out_shape}"
        )
    return Reading(image.name, out.name, way, _channels(shape, way), int(height), int(width))


def _channels(shape: list, way: str) -> int | str:
    return shape[1] if way == "nchw" else shape[3]


def model_input(images: np.ndarray, reading: Reading, scaling: Scaling) -> np.ndarray:
    """uint8 RGB (N, H, W, 3) images -> what the source model takes, computed in numpy as the
    user's own code would: grey, scaled, in its layout. The fidelity gate's reference."""
    x = layout(images)
    if reading.channels == 1:
        x = np.tensordot(np.asarray(LUMA, np.float32), x, axes=([0], [1]))[:, None]
    multiplier, offset = scaling.per_channel(reading.channels)
    x = x * multiplier - offset
    return np.ascontiguousarray(x.transpose(0, 2, 3, 1) if reading.layout == "nhwc" else x)


def served_copy(model: onnx.ModelProto, reading: Reading, scaling: Scaling) -> onnx.ModelProto:
    """A copy that takes PIXELS (RGB 0..255, float32 [N, 3, H, W]) and gives LOGITS: in front
    of the user's graph, the grey conversion, scaling and transpose it expects."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    taken = {n for node in graph.node for n in (*node.input, *node.output)}
    taken |= {i.name for i in (*graph.input, *graph.output, *graph.initializer)}
    if C.PIXELS in taken - {reading.input} or C.LOGITS in taken - {reading.output}:
        raise ContractError(f"the model already has a tensor named {C.PIXELS} or {C.LOGITS}")
    multiplier, offset = scaling.per_channel(reading.channels)
    constants = {"maas_multiplier": multiplier, "maas_offset": offset}
    nodes, x = [], C.PIXELS
    if reading.channels == 1:
        constants["maas_luma"] = np.asarray(LUMA, np.float32).reshape(1, 3, 1, 1)
        nodes.append(helper.make_node("Conv", [x, "maas_luma"], ["maas_grey"]))
        x = "maas_grey"
    nodes.append(helper.make_node("Mul", [x, "maas_multiplier"], ["maas_scaled"]))
    last = reading.input if reading.layout == "nchw" else "maas_nchw"
    nodes.append(helper.make_node("Sub", ["maas_scaled", "maas_offset"], [last]))
    if reading.layout == "nhwc":
        nodes.append(helper.make_node("Transpose", [last], [reading.input], perm=[0, 2, 3, 1]))
    for node in graph.node:
        node.output[:] = [C.LOGITS if n == reading.output else n for n in node.output]
        node.input[:] = [C.LOGITS if n == reading.output else n for n in node.input]
    user_nodes = list(graph.node)
    del graph.node[:]
    graph.node.extend([*nodes, *user_nodes])  # a topological order still: the prefix first
    graph.initializer.extend(numpy_helper.from_array(v, k) for k, v in constants.items())
    [image] = [i for i in graph.input if i.name == reading.input]
    pixels = helper.make_tensor_value_info(
        C.PIXELS, TensorProto.FLOAT, [image.type.tensor_type.shape.dim[0].dim_param or "N",
                                      3, reading.height, reading.width]
    )  # fmt: skip
    graph.input.remove(image)
    graph.input.insert(0, pixels)
    graph.output[0].name = C.LOGITS
    return model


def looks_like_probabilities(rows: np.ndarray) -> bool:
    """Every row non-negative and summing to 1: a probability distribution (a softmax)."""
    return bool(rows.min() >= 0 and np.allclose(rows.sum(axis=1), 1.0, atol=1e-3))


# Operations that pass a value through unchanged in meaning, looked through to find the one
# that made a model's output.
PASS_THROUGH = {"Identity", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Cast"}


def last_operation(model: onnx.ModelProto, output: str) -> str:
    """The operation that makes `output`, looking through reshapes and casts ("" if none)."""
    made_by = {o: node for node in model.graph.node for o in node.output}
    node = made_by.get(output)
    while node is not None and node.op_type in PASS_THROUGH and node.input:
        node = made_by.get(node.input[0])
    return node.op_type if node is not None else ""


def judge_outputs(rows: np.ndarray, reading: Reading, given: str | None, last_op: str = "") -> str:
    """logits or probabilities, from the source model's outputs on real images and the
    operation that makes them, or the flag checked against them."""
    name = f"output {reading.output!r}"
    within = rows.min() >= 0 and rows.max() <= 1
    if looks_like_probabilities(rows):
        if given == "logits":
            raise ContractError(
                f"{name} is already probabilities (every row of {len(rows)} images sums to 1): "
                "serving it as logits would apply softmax twice; drop --outputs logits"
            )
        return "probabilities"
    if given == "probabilities" and not within:
        raise ContractError(
            f"{name} has values outside 0..1 ({rows.min():.3g} to {rows.max():.3g}): not "
            "probabilities; drop --outputs probabilities"
        )
    if given is None and last_op == "Sigmoid":
        raise ContractError(
            f"{name} is made by a Sigmoid: independent probabilities, whose rows do not sum "
            "to 1; say how to score them with --outputs probabilities (as they are) or "
            "--outputs logits (softmax)"
        )
    return given or "logits"


def prepare(
    source: Path,
    labels_file: Path,
    name: str,
    scaling: Scaling,
    scratch: Path,
    max_pixels: int,
    default_top_k: int,
    layout: str | None = None,
    outputs: str | None = None,
    size: tuple[int, int] | None = None,
):
    """(pipeline, gate data, the served copy to build from); raises ContractError."""
    if name in RESERVED or not name.replace("_", "").isalnum():
        raise ContractError(f"--name {name!r}: letters, digits and _, not one of ours")
    labels = [line for line in labels_file.read_text().splitlines() if line.strip()]
    model = onnx.load(str(source))
    reading = read_model(model, labels, layout, size)
    images = fidelity_images(reading.height, reading.width)
    session = ort.InferenceSession(str(source), providers=["CPUExecutionProvider"])
    try:
        feeds = {reading.input: model_input(images, reading, scaling)}
        [rows] = session.run([reading.output], feeds)
    except Exception as e:  # ONNX Runtime's own errors, said in one line
        raise ContractError(f"the model does not run on {reading}: {e}".splitlines()[0]) from None
    if rows.shape != (len(images), len(labels)):
        raise ContractError(
            f"output {reading.output!r}: {rows.shape[1:]} values per image, expected "
            f"{len(labels)} (one per label in the labels file)"
        )
    judged = judge_outputs(rows, reading, outputs, last_operation(model, reading.output))
    reading = dataclasses.replace(reading, outputs=judged)
    onnx_path = scratch / "model.onnx"
    onnx.save(served_copy(model, reading, scaling), str(onnx_path))
    pre = Preprocessing(reading.height, reading.width, max_pixels)
    pipeline = catalog.image_classifier(
        pre, labels, default_top_k, name=name, outputs=reading.outputs
    )
    log.info("%s: %s input %r (%d channel%s, %dx%d), output %r holds %s", source.name,
             reading.layout.upper(), reading.input, reading.channels, "s" * (reading.channels > 1),
             reading.height, reading.width, reading.output, reading.outputs)  # fmt: skip
    return pipeline, fidelity_data(pipeline.core, images, rows, reading), onnx_path


def fidelity_images(height: int, width: int) -> np.ndarray:
    """Real images at the model's size: scikit-learn's held-out digits, RGB uint8."""
    from maas.training.data import load_digits

    images = load_digits(seed=0).test_x
    if images.shape[1:3] != (height, width):
        images = np.stack([np.asarray(Image.fromarray(x).resize((width, height))) for x in images])
    return images


def fidelity_data(core, images: np.ndarray, source: np.ndarray, reading: Reading) -> CoreData:
    """The gate: a variant's served scores (its output through postprocess as declared)
    against the source model's own (its probabilities, or the softmax of its logits)."""
    heldout = {C.PIXELS: layout(images)}
    probabilities = reading.outputs == "probabilities"
    want = scores(source, probabilities)
    top1 = want.argmax(1)

    def gate(run: Run, variant: Variant, tolerance: float | None) -> Verdict:
        got = scores(in_batches(run, heldout)[C.LOGITS], probabilities)
        agree = float((got.argmax(1) == top1).mean())
        worst = float(np.abs(got - want).max())
        bound = SCORE_TOLERANCE[variant.precision]
        problems = ()
        if not worst <= bound:
            problems = (
                f"scores differ from the source model's by up to {worst:.3g} (over {bound:g}; "
                f"served as {reading.outputs}: is --outputs right?)",
            )
        return Verdict(
            variant=variant.name,
            metric="top-1 agreement with the source ONNX",
            reference=1.0,
            value=agree,
            drop=(1.0 - agree) * 100,
            tolerance=variant.tolerance if tolerance is None else tolerance,
            problems=problems,
            extra={"max_score_difference": worst, "score_tolerance": bound},
        )

    return CoreData(core, calibration=heldout, sample=heldout, gate=gate,
                    record={"fidelity_images": len(images), "outputs": reading.outputs,
                            "layout": reading.layout, "channels": reading.channels})  # fmt: skip


def build_own_onnx(
    source: str | Path,
    labels_file: str | Path,
    target: str | Path,
    name: str,
    scaling: Scaling | None = None,
    opts=None,
    build=None,
    *,
    layout: str | None = None,
    outputs: str | None = None,
    size: tuple[int, int] | None = None,
) -> Path:
    """Read, check, gate and build a user's ONNX into `target` (nothing written on error)."""
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
            source, labels_file, name, scaling or Scaling(), Path(tmp), opts.max_pixels,
            opts.top_k, layout, outputs, size,
        )  # fmt: skip
        record = {"user_onnx": str(source), "user_onnx_sha256": manifest.sha256(source),
                  "labels": str(labels_file)}  # fmt: skip
        return build_pipelines(
            (pipeline,), [(onnx_path, data)], target, opts, build, VARIANTS, record
        )
