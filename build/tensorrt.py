"""TensorRT 10 engines for `platform: tensorrt_plan` (variants trt-fp32, trt-fp16, trt-int8).

NOT RUN IN CI: TensorRT cannot be installed on the machines maas is tested on. Everything
before the TensorRT calls (profile shapes, calibration batches, configs) is tested; this module
keeps the calls themselves few and typed against the TensorRT 10 Python API:
OnnxParser -> one optimisation profile for the dynamic batch -> FP16 / INT8 (entropy
calibrator on real training images, cache reused) -> timing cache reused -> serialised plan.
torch (CUDA) holds the device buffers, so no pycuda is needed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maas.build.gate import Batch, Run
from maas.spec import Step
from maas.training.checkpoint import atomic_write

INSTALL_HINT = (
    "TensorRT is not installed: pip install 'maas[tensorrt]' on a Linux machine with an NVIDIA "
    "GPU, or run `maas build` inside an NGC TensorRT or Triton container"
)


class TensorRTUnavailable(RuntimeError):
    """This machine cannot build TensorRT engines; the message says what to install."""


def load_tensorrt():
    try:
        import tensorrt as trt
    except ImportError:
        raise TensorRTUnavailable(INSTALL_HINT) from None
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable("TensorRT needs a CUDA GPU and torch sees none")
    return trt


@dataclass(frozen=True)
class Profile:
    """The optimisation profile of the dynamic batch axis; max becomes max_batch_size."""

    min_batch: int = 1
    opt_batch: int = 16
    max_batch: int = 64

    def __post_init__(self):
        if not 1 <= self.min_batch <= self.opt_batch <= self.max_batch:
            raise ValueError(
                f"profile needs 1 <= min <= opt <= max, got {self.min_batch}/{self.opt_batch}/"
                f"{self.max_batch}"
            )

    def shapes(self, dims: tuple[int, ...]) -> tuple[tuple[int, ...], ...]:
        """(min, opt, max) shapes of an input with these dims (after the batch axis), for
        IOptimizationProfile.set_shape."""
        return tuple((b, *dims) for b in (self.min_batch, self.opt_batch, self.max_batch))


@dataclass(frozen=True)
class EngineOptions:
    precision: str  # fp32 | fp16 | int8
    profile: Profile = Profile()
    workspace_bytes: int = 1 << 30
    timing_cache: Path | None = None  # read if present, rewritten after the build
    calibration_cache: Path | None = None  # INT8: read if present, else written


def compute_capability() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def build_engine(
    onnx_path: Path,
    out: Path,
    core: Step,
    options: EngineOptions,
    calibration: Iterable[Batch] = (),
) -> Path:
    trt = load_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT could not parse {onnx_path}: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace_bytes)
    profile = builder.create_optimization_profile()
    for tensor in core.inputs:  # the batch axis is the one dynamic axis
        profile.set_shape(tensor.name, *options.profile.shapes(tensor.dims))
    config.add_optimization_profile(profile)
    if options.precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)  # INT8 layers fall back to FP16, not FP32
    if options.precision == "int8":
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = _entropy_calibrator(
            trt, calibration, options.profile.opt_batch, options.calibration_cache
        )
        config.set_calibration_profile(profile)

    cache_file = options.timing_cache
    cached = cache_file.read_bytes() if cache_file and cache_file.is_file() else b""
    config.set_timing_cache(config.create_timing_cache(cached), ignore_mismatch=False)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise RuntimeError("TensorRT failed to build the engine; its log above says why")
    if cache_file is not None:
        timing = config.get_timing_cache().serialize()
        atomic_write(cache_file, lambda f: f.write(memoryview(timing)))
    atomic_write(out, lambda f: f.write(memoryview(plan)))
    return out


def _entropy_calibrator(trt, batches: Iterable[Batch], batch_size: int, cache: Path | None):
    import torch

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self):
            super().__init__()
            self._batches = iter(batches)
            self._on_device = None  # TensorRT reads the pointer after get_batch returns

        def get_batch_size(self) -> int:
            return batch_size

        def get_batch(self, names):
            batch = next(self._batches, None)
            if batch is None:
                return None
            self._on_device = [torch.from_numpy(batch[name]).cuda() for name in names]
            return [int(t.data_ptr()) for t in self._on_device]

        def read_calibration_cache(self):
            return cache.read_bytes() if cache is not None and cache.is_file() else None

        def write_calibration_cache(self, data) -> None:
            if cache is not None:
                atomic_write(cache, lambda f: f.write(memoryview(data)))

    return EntropyCalibrator()


def engine_runner(plan: Path, core: Step, max_batch: int) -> Run:
    """Run a plan on named float32 inputs (split at the profile's max) -> named outputs."""
    trt = load_tensorrt()
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(plan).read_bytes())
    context = engine.create_execution_context()

    def run(batch: Batch) -> Batch:
        rows = len(next(iter(batch.values())))
        out: dict[str, list[np.ndarray]] = {t.name: [] for t in core.outputs}
        for i in range(0, rows, max_batch):
            inputs = {
                t.name: torch.from_numpy(
                    np.ascontiguousarray(batch[t.name][i : i + max_batch])
                ).cuda()
                for t in core.inputs
            }
            for name, tensor in inputs.items():
                context.set_input_shape(name, tuple(tensor.shape))
                context.set_tensor_address(name, tensor.data_ptr())
            outputs = {
                t.name: torch.empty(
                    tuple(context.get_tensor_shape(t.name)), dtype=torch.float32, device="cuda"
                )
                for t in core.outputs
            }
            for name, tensor in outputs.items():
                context.set_tensor_address(name, tensor.data_ptr())
            stream = torch.cuda.current_stream()
            if not context.execute_async_v3(stream.cuda_stream):
                raise RuntimeError("TensorRT execution failed")
            stream.synchronize()
            for name, tensor in outputs.items():
                out[name].append(tensor.cpu().numpy())
        return {name: np.concatenate(parts) for name, parts in out.items()}

    return run
