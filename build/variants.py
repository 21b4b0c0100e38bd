"""The variants of a core model `maas build` can produce, and how to make and run each.

name      runtime      precision  default gate (accuracy points below PyTorch)
onnx      onnxruntime  fp32       0.5   the exported graph, portable (build/portable.py)
ort-int8  onnxruntime  int8       1.0   static QDQ, per-channel, calibrated; portable
trt-fp32  tensorrt     fp32       0.5   TensorRT 10 engine (GPU; not run in CI)
trt-fp16  tensorrt     fp16       0.5
trt-int8  tensorrt     int8       1.0   explicit: a symmetric QDQ graph (build/quantize.py)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from maas.build import tensorrt
from maas.build.calibration import calibration_batches
from maas.build.gate import Batch, Run
from maas.build.portable import portable
from maas.build.quantize import quantize_int8
from maas.errors import TensorRTUnavailable
from maas.spec import Step


@dataclass(frozen=True)
class Variant:
    name: str
    runtime: str  # "onnxruntime" (Python backend / onnxruntime_onnx) or "tensorrt" (tensorrt_plan)
    precision: str
    tolerance: float  # default gate tolerance (the classifier's, in accuracy points)

    @property
    def model_file(self) -> str:
        return "model.onnx" if self.runtime == "onnxruntime" else "model.plan"


VARIANTS = {
    v.name: v
    for v in (
        Variant("onnx", "onnxruntime", "fp32", 0.5),
        Variant("ort-int8", "onnxruntime", "int8", 1.0),
        Variant("trt-fp32", "tensorrt", "fp32", 0.5),
        Variant("trt-fp16", "tensorrt", "fp16", 0.5),
        Variant("trt-int8", "tensorrt", "int8", 1.0),
    )
}


def unavailable_reason(variant: Variant) -> str | None:
    """None when this machine can build `variant`, else a one-line reason."""
    if variant.runtime != "tensorrt":
        return None
    try:
        tensorrt.load_tensorrt()
    except TensorRTUnavailable as e:
        return str(e)
    return None


def resolve(name: str, allowed: tuple[str, ...] = tuple(VARIANTS)) -> list[Variant]:
    """The variants a --variant value asks for: one by name, or for auto every buildable one
    of those `allowed` (the family's)."""
    if name == "auto":
        return [VARIANTS[v] for v in allowed if unavailable_reason(VARIANTS[v]) is None]
    if name not in allowed:
        raise ValueError(f"unknown variant {name!r}; choose auto or one of {', '.join(allowed)}")
    reason = unavailable_reason(VARIANTS[name])
    if reason:
        raise TensorRTUnavailable(f"cannot build {name}: {reason}")
    return [VARIANTS[name]]


@dataclass(frozen=True)
class BuildInputs:
    """What every variant of a core model is made from."""

    onnx: Path
    core: Step  # its tensors: names, datatypes, dims without the batch axis
    calibration: Batch  # real model inputs (rows), as the server feeds the core model
    trt: tensorrt.EngineOptions | None = None  # profile, workspace, cache (precision set here)


def produce(variant: Variant, inputs: BuildInputs, folder: Path) -> Path:
    """Write the variant's model file into `folder`; return its path."""
    out = folder / variant.model_file
    if variant.name == "onnx":
        return portable(inputs.onnx, out)
    if variant.name == "ort-int8":
        return quantize_int8(inputs.onnx, out, calibration_batches(inputs.calibration, 32))
    base = inputs.trt or tensorrt.EngineOptions(precision=variant.precision)
    options = dataclasses.replace(base, precision=variant.precision)
    source = inputs.onnx
    if variant.precision == "int8":  # explicit quantisation: TensorRT builds the Q/DQ graph
        batches = calibration_batches(inputs.calibration, 32)
        source = quantize_int8(source, folder / "qdq.onnx", batches, for_tensorrt=True)
    return tensorrt.build_engine(source, out, inputs.core, options)


def ort_session(path: Path, intra_op_threads: int) -> ort.InferenceSession:
    """An ONNX Runtime session set up as the served core model sets it up: the graph is
    optimised at load (level ALL, ORT's default and the backend's)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = intra_op_threads
    options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def runner(variant: Variant, path: Path, core: Step, intra_op_threads: int, max_batch: int) -> Run:
    """Named input arrays -> named outputs, on the runtime the server will use."""
    if variant.runtime == "tensorrt":
        return tensorrt.engine_runner(path, core, max_batch)
    session = ort_session(path, intra_op_threads)
    names = [t.name for t in core.outputs]
    return lambda batch: dict(zip(names, session.run(names, batch), strict=True))
