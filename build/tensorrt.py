"""TensorRT 10 engines for `platform: tensorrt_plan` (variants trt-fp32, trt-fp16, trt-int8),
made and run with Polygraphy's loaders (polygraphy.backend.trt).

Why Polygraphy: it is TensorRT's team's own tool, kept in step with TensorRT's API (parsing,
profiles, precision flags, timing caches, engine loading, a runner), where maas kept its own
copy of those calls that nothing could test. It installs without TensorRT and imports it
lazily, so CPU CI checks what maas asks for (the loaders' arguments, built but not called:
tests/unit/test_tensorrt_contract.py); the calls into TensorRT run only where it and a GPU
exist (-m gpu, benchmarks/gpu_check.sh).

INT8 is explicit quantisation, TensorRT's current path (its implicit calibrator is deprecated
since 10.1): the ONNX gets Q/DQ nodes on the CPU from onnxruntime.quantization, calibrated on
real training images (build/quantize.py, tested here), and TensorRT builds that graph with
INT8 enabled and no calibrator.

A plan loads only on the TensorRT version that built it: the `tensorrt` extra is pinned to
the one Triton's container ships (build/release.py); change both together.
"""

from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maas.build.gate import Batch, Run
from maas.errors import TensorRTError, TensorRTUnavailable
from maas.files import atomic_write
from maas.spec import Step

INSTALL_HINT = (
    "TensorRT is not installed: pip install 'maas[tensorrt]' on a Linux machine with an NVIDIA "
    "GPU, or run `maas build` inside an NGC TensorRT or Triton container"
)
TENSORRT_MAJOR = 10  # the API maas is written against; the extra pins Triton's release


@contextlib.contextmanager
def _polygraphy(failed: str | None = None, severity: int | None = None):
    """Polygraphy's log at warnings and up (TensorRT's too: its INFO lines would bury the
    build's table) and without colour codes; its errors, which it has already logged, raised
    as one TensorRTError saying what `failed`."""
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    colors, G_LOGGER.colors = G_LOGGER.colors, False
    try:
        with G_LOGGER.verbosity(G_LOGGER.WARNING if severity is None else severity):
            yield
    except PolygraphyException as e:
        if failed is None:
            raise
        raise TensorRTError(f"{failed}: {_first_line(e)}") from None
    finally:
        G_LOGGER.colors = colors


def _first_line(error: Exception) -> str:
    return next((line.strip() for line in str(error).splitlines() if line.strip()), "")


def load_tensorrt():
    """The tensorrt module, through Polygraphy's lazy import (the one its loaders use), or
    TensorRTUnavailable in one line. Polygraphy may not pip-install TensorRT itself
    (POLYGRAPHY_AUTOINSTALL_DEPS): an unpinned TensorRT builds plans Triton cannot load."""
    from polygraphy import config, mod
    from polygraphy.exception import PolygraphyException
    from polygraphy.logger import G_LOGGER

    config.AUTOINSTALL_DEPS = False
    trt = mod.lazy_import("tensorrt")
    try:
        with _polygraphy(severity=G_LOGGER.CRITICAL + 1):  # its message is several lines
            version = trt.__version__  # the import happens here
    except PolygraphyException as e:
        if not trt.is_installed():
            raise TensorRTUnavailable(INSTALL_HINT) from None
        cause = e.__context__ if isinstance(e.__context__, ImportError) else e  # libnvinfer...
        raise TensorRTUnavailable(
            f"TensorRT is installed but does not import ({_first_line(cause)}): "
            f"pip install 'maas[tensorrt]'"
        ) from None
    if int(version.split(".")[0]) != TENSORRT_MAJOR:
        raise TensorRTUnavailable(
            f"TensorRT {version} found; maas is written for TensorRT {TENSORRT_MAJOR}: "
            f"pip install 'maas[tensorrt]'"
        )
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
        """(min, opt, max) shapes of an input with these dims (after the batch axis)."""
        return tuple((b, *dims) for b in (self.min_batch, self.opt_batch, self.max_batch))


@dataclass(frozen=True)
class EngineOptions:
    precision: str  # fp32 | fp16 | int8 (for int8, build from the Q/DQ graph)
    profile: Profile = Profile()
    workspace_bytes: int = 1 << 30
    # Timing caches live here, one per (TensorRT version, GPU): read if present, extended
    # after a build (see timing_cache_file).
    timing_cache_dir: Path | None = None


def compute_capability() -> str:
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"{major}.{minor}"


def builder_flags(precision: str) -> list[str]:
    """The BuilderFlag names set for a precision; recorded in the manifest. TF32 is always
    cleared (on by default, so Ampere and newer would run fp32 layers in TF32). int8 keeps
    FP16 for the layers the Q/DQ graph leaves in float."""
    return {"fp32": [], "fp16": ["FP16"], "int8": ["FP16", "INT8"]}[precision]


def timing_cache_file(folder: Path, trt_version: str, capability: str) -> Path:
    """One timing cache per (TensorRT version, GPU compute capability): a cache from another
    version or GPU is refused by TensorRT, or worse, misleads it."""
    return folder / f"timing-trt{trt_version}-sm{capability.replace('.', '')}.cache"


def trt_profile(core: Step, profile: Profile):
    """Polygraphy's optimisation profile: each input's batch axis (its one dynamic axis) from
    min to max."""
    from polygraphy.backend.trt import Profile as TrtProfile

    out = TrtProfile()
    for tensor in core.inputs:
        low, opt, high = profile.shapes(tensor.dims)
        out.add(tensor.name, min=low, opt=opt, max=high)
    return out


@dataclass(frozen=True)
class Loaders:
    """A plan's Polygraphy loaders, made and not called: what maas asks TensorRT for."""

    network: object  # NetworkFromOnnxPath
    config: object  # CreateConfig
    build: object  # EngineBytesFromNetwork: called, the serialised plan


def engine_loaders(
    onnx_path: Path, core: Step, options: EngineOptions, trt, cache_file: Path | None = None
) -> Loaders:
    """The loaders for `options`; `trt` is the tensorrt module (its MemoryPoolType names the
    workspace pool). A timing cache is read only if it exists (else Polygraphy warns), and
    saved after the build (Polygraphy merges it into the file, under a lock)."""
    from polygraphy.backend.trt import CreateConfig, EngineBytesFromNetwork, NetworkFromOnnxPath

    flags = builder_flags(options.precision)
    with _polygraphy():
        network = NetworkFromOnnxPath(str(onnx_path))
        config = CreateConfig(
            profiles=[trt_profile(core, options.profile)],
            tf32=False,
            fp16="FP16" in flags,
            int8="INT8" in flags,  # explicit: the graph's Q/DQ nodes say where; no calibrator
            memory_pool_limits={trt.MemoryPoolType.WORKSPACE: options.workspace_bytes},
            load_timing_cache=str(cache_file) if cache_file and cache_file.is_file() else None,
        )
        build = EngineBytesFromNetwork(
            network, config=config, save_timing_cache=str(cache_file) if cache_file else None
        )
    return Loaders(network, config, build)


def build_engine(onnx_path: Path, out: Path, core: Step, options: EngineOptions) -> Path:
    """The plan of `onnx_path` (for int8, its Q/DQ graph: build/quantize.py) written to `out`."""
    trt = load_tensorrt()
    cache_file = None
    if options.timing_cache_dir is not None:
        options.timing_cache_dir.mkdir(parents=True, exist_ok=True)
        cache_file = timing_cache_file(
            options.timing_cache_dir, trt.__version__, compute_capability()
        )
    loaders = engine_loaders(onnx_path, core, options, trt, cache_file)
    with _polygraphy(f"TensorRT could not build {Path(onnx_path).name}; its log above says why"):
        plan = loaders.build()
    atomic_write(out, lambda f: f.write(memoryview(plan)))
    return out


def engine_runner(plan: Path, core: Step, max_batch: int) -> Run:
    """Run a plan on named inputs (split at the profile's max) -> named outputs, with
    Polygraphy's TrtRunner (its own CUDA stream and buffers; no pycuda)."""
    trt = load_tensorrt()
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    runner = TrtRunner(EngineFromBytes(BytesFromPath(str(plan))), name=Path(plan).name)
    with _polygraphy(
        f"TensorRT could not load {plan}: usually a plan built by another TensorRT version or "
        f"for another GPU (this one: {trt.__version__}, sm {compute_capability()})"
    ):
        runner.activate()
    names = [t.name for t in core.outputs]

    def run(batch: Batch) -> Batch:
        rows = len(next(iter(batch.values())))
        out: dict[str, list[np.ndarray]] = {name: [] for name in names}
        for i in range(0, rows, max_batch):
            feed = {
                t.name: np.ascontiguousarray(batch[t.name][i : i + max_batch]) for t in core.inputs
            }
            with _polygraphy(f"TensorRT inference on {Path(plan).name} failed"):
                result = runner.infer(feed, check_inputs=False)
            for name in names:  # copied: the runner reuses its output buffers
                out[name].append(np.array(result[name]))
        return {name: np.concatenate(parts) for name, parts in out.items()}

    weakref.finalize(run, runner.deactivate)  # its CUDA buffers and stream go with `run`
    return run


def plan_fits(entry: dict, cc: str, profile: Profile) -> bool:
    """Whether a TensorRT version (its manifest) can serve beside a new build on this GPU:
    a plan for compute capability `cc`, built with a profile reaching `profile.max_batch`."""
    built = entry.get("tensorrt", {}).get("profile", {})
    return cc in entry.get("cc_model_filenames", {}) and (
        built.get("max_batch", 0) >= profile.max_batch and built.get("min_batch", 1) == 1
    )
