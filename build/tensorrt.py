"""TensorRT 10 engines for `platform: tensorrt_plan` (variants trt-fp32, trt-fp16, trt-int8).

NOT RUN IN CI: TensorRT cannot be installed on the machines maas is tested on. Our handling of
what TensorRT returns (None engines, refused caches, shapes, flags, calibrator errors) is
tested against a double of the module that behaves as the 10.5 documentation says
(tests/unit/test_tensorrt_contract.py); the calls themselves are typed against the TensorRT 10
Python API: OnnxParser -> one optimisation profile for the dynamic batch (min 1) -> FP16 /
INT8 (entropy calibrator on real training images, its own min=opt=max profile, cache reused)
-> timing cache keyed by TensorRT version and GPU -> serialised plan. torch (CUDA) holds the
device buffers and the stream, so no pycuda is needed.

A plan loads only on the TensorRT version that built it: the `tensorrt` extra is pinned to
the one Triton's container ships (build/release.py); change both together.
"""

from __future__ import annotations

import sys
import traceback
import warnings
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


class TensorRTError(RuntimeError):
    """TensorRT returned nothing where maas needs an object; the message says the usual cause."""


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
        if self.min_batch != 1:
            # Triton sends batch-1 requests (and warms up with them), and the gate's last
            # chunk and the speed figures at batch 1 need it too.
            raise ValueError(
                f"--trt-min-batch {self.min_batch}: a plan served by Triton must take batch 1; "
                f"leave it at 1 (tune --trt-opt-batch instead)"
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
    # Timing caches live here, one per (TensorRT version, GPU): read if present, rewritten
    # after a build (see timing_cache_file).
    timing_cache_dir: Path | None = None
    calibration_cache: Path | None = None  # INT8: read if present, else written


def compute_capability() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def builder_flags(precision: str) -> list[str]:
    """The BuilderFlag names set for a precision; recorded in the manifest. fp32 clears TF32
    (on by default, so Ampere and newer would run fp32 layers in TF32)."""
    return {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}[precision]


def timing_cache_file(folder: Path, trt_version: str, capability: str) -> Path:
    """One timing cache per (TensorRT version, GPU compute capability): a cache from another
    version or GPU is refused by TensorRT, or worse, misleads it."""
    return folder / f"timing-trt{trt_version}-sm{capability.replace('.', '')}.cache"


def _warn(text: str) -> None:
    print(f"[maas] TensorRT: {text}", file=sys.stderr, flush=True)


def _timing_cache(config, cache_file: Path | None):
    """The builder's timing cache: the saved one if TensorRT takes it, else a fresh one."""
    cached = cache_file.read_bytes() if cache_file and cache_file.is_file() else b""
    cache = config.create_timing_cache(cached)
    if cache is None and cached:
        _warn(f"could not read the timing cache {cache_file}; starting a fresh one")
        cached, cache = b"", config.create_timing_cache(b"")
    if cache is None:
        raise TensorRTError("TensorRT could not create a timing cache")
    if not config.set_timing_cache(cache, ignore_mismatch=False):
        _warn(f"the timing cache {cache_file} is from another TensorRT or GPU; not used")
        fresh = config.create_timing_cache(b"")
        if fresh is None or not config.set_timing_cache(fresh, ignore_mismatch=False):
            raise TensorRTError("TensorRT refused a fresh timing cache")


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
    config.clear_flag(trt.BuilderFlag.TF32)  # fp32 means fp32
    for flag in builder_flags(options.precision):
        config.set_flag(getattr(trt.BuilderFlag, flag))
    if options.precision == "int8":
        batches = list(calibration)
        if not batches:
            raise ValueError(
                f"no INT8 calibration batch: fewer calibration rows than the OPT batch "
                f"({options.profile.opt_batch}); give more (--calibration-images) or lower "
                f"--trt-opt-batch"
            )
        # As trtexec does: calibrate on a profile of exactly the calibration batch size.
        calib = builder.create_optimization_profile()
        size = options.profile.opt_batch
        for tensor in core.inputs:
            calib.set_shape(tensor.name, *(((size, *tensor.dims),) * 3))
        # Implicit INT8 calibration is deprecated from TensorRT 10.1 in favour of explicit
        # quantisation; it still works in 10.5, and the warning is TensorRT's, not a bug here.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            config.int8_calibrator = _entropy_calibrator(
                trt, batches, size, options.calibration_cache
            )
            config.set_calibration_profile(calib)
    cache_file = None
    if options.timing_cache_dir is not None:
        cache_file = timing_cache_file(
            options.timing_cache_dir, trt.__version__, compute_capability()
        )
    _timing_cache(config, cache_file)

    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise TensorRTError("TensorRT failed to build the engine; its log above says why")
    atomic_write(out, lambda f: f.write(memoryview(plan)))  # the plan first: it is the result
    if cache_file is not None:
        try:
            cache = config.get_timing_cache()
            if cache is None:
                raise TensorRTError("the builder has no timing cache")
            timing = cache.serialize()
            atomic_write(cache_file, lambda f: f.write(memoryview(timing)))
        except Exception as e:  # a cache is an optimisation: the plan stands
            _warn(f"timing cache not saved ({type(e).__name__}: {e})")
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

        # TensorRT swallows exceptions raised in these callbacks: each logs its own.
        def get_batch(self, names):
            try:
                batch = next(self._batches, None)
                if batch is None:
                    return None
                self._on_device = [torch.from_numpy(batch[name]).cuda() for name in names]
                return [int(t.data_ptr()) for t in self._on_device]
            except Exception:
                _warn("calibration batch failed:\n" + traceback.format_exc())
                return None

        def read_calibration_cache(self):
            try:
                return cache.read_bytes() if cache is not None and cache.is_file() else None
            except Exception:
                _warn(f"calibration cache {cache} not read:\n" + traceback.format_exc())
                return None

        def write_calibration_cache(self, data) -> None:
            try:
                if cache is not None:
                    atomic_write(cache, lambda f: f.write(memoryview(data)))
            except Exception:
                _warn(f"calibration cache {cache} not written:\n" + traceback.format_exc())

    return EntropyCalibrator()


def engine_runner(plan: Path, core: Step, max_batch: int) -> Run:
    """Run a plan on named float32 inputs (split at the profile's max) -> named outputs."""
    trt = load_tensorrt()
    import torch

    runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(Path(plan).read_bytes())
    if engine is None:
        raise TensorRTError(
            f"TensorRT could not load {plan}: usually a plan built by another TensorRT version "
            f"or for another GPU (this one: {trt.__version__}, sm {compute_capability()})"
        )
    context = engine.create_execution_context()
    if context is None:
        raise TensorRTError(f"TensorRT could not create an execution context for {plan}")
    # Our own stream: the legacy default stream makes enqueueV3 warn and synchronise.
    stream = torch.cuda.Stream()

    def run(batch: Batch) -> Batch:
        rows = len(next(iter(batch.values())))
        out: dict[str, list[np.ndarray]] = {t.name: [] for t in core.outputs}
        for i in range(0, rows, max_batch):
            with torch.cuda.stream(stream):
                inputs = {
                    t.name: torch.from_numpy(
                        np.ascontiguousarray(batch[t.name][i : i + max_batch])
                    ).cuda(non_blocking=False)
                    for t in core.inputs
                }
                bind_inputs(context, inputs)
                outputs = {
                    t.name: torch.empty(
                        tuple(context.get_tensor_shape(t.name)), dtype=torch.float32,
                        device="cuda",
                    )
                    for t in core.outputs
                }  # fmt: skip
                for name, tensor in outputs.items():
                    context.set_tensor_address(name, tensor.data_ptr())
                if not context.execute_async_v3(stream.cuda_stream):
                    raise TensorRTError("TensorRT execution failed")
            stream.synchronize()
            for name, tensor in outputs.items():
                out[name].append(tensor.cpu().numpy())
        return {name: np.concatenate(parts) for name, parts in out.items()}

    return run


def bind_inputs(context, inputs: dict) -> None:
    """Shapes and addresses of the inputs; a shape outside the engine's profile is refused
    (set_input_shape returns False) with a message instead of a later, vaguer failure."""
    for name, tensor in inputs.items():
        shape = tuple(tensor.shape)
        if not context.set_input_shape(name, shape):
            raise TensorRTError(
                f"input {name}: shape {shape} is outside the engine's optimisation profile"
            )
        context.set_tensor_address(name, tensor.data_ptr())
