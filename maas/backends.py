"""Which tritonserver runs, with which backends, and what it can serve: the binary (a
container's, on PATH, or the nvidia-pytriton wheel's), the backends folder laid out for it (the
wheel's Python backend with the stub for the stubs' Python, and extra backends such as
Triton's onnxruntime), the config each model is served with, and the TensorRT plans a server
cannot load.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from maas.errors import ServerError

STUB = "triton_python_backend_stub"
# What this tritonserver build prints on a machine without a GPU, though all is well: a CUDA
# helper, pinned memory and the ensemble's CUDA stream all fall back to the CPU path.
CPU_ONLY_NOISE = re.compile(
    r"CudaDriverHelper has not been initialized"
    r"|unable to create stream for \S+: CUDA driver version is insufficient"
    r"|failed to allocate pinned system memory: no pinned memory pool"
)
# Options that keep it off the CUDA paths it can avoid (pools, GPU metrics) when there is no GPU.
CPU_ONLY_ARGS = (
    "--pinned-memory-pool-byte-size=0",
    "--cuda-memory-pool-byte-size=0:0",
    "--allow-gpu-metrics=false",
)


def has_gpu() -> bool:
    """An NVIDIA driver is present (the device node every CUDA process opens)."""
    return Path("/dev/nvidiactl").exists()


def find_tritonserver() -> tuple[Path, Path | None]:
    """(binary, pytriton backends folder or None when the binary's own backends are used)."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return Path(on_path), None
    try:
        import pytriton
    except ImportError:
        raise ServerError(
            "no tritonserver: put one on PATH (NGC container) or `pip install nvidia-pytriton`"
        ) from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    return root / "bin" / "tritonserver", root / "backends"


NATIVE_BACKEND = "onnxruntime"  # what a core model's config.pbtxt runs on
PYTHON_CONFIG = "python"  # configs/python.pbtxt: build.configs.core_python_config
BACKEND_DIR_ENV = "MAAS_BACKEND_DIR"


def backend_dir_default() -> Path | None:
    value = os.environ.get(BACKEND_DIR_ENV)
    return Path(value) if value else None


def backends_in(folder: Path) -> set[str]:
    """The backends a backends folder holds (its subfolders: python, onnxruntime, ...)."""
    return {e.name for e in folder.iterdir() if e.is_dir()} if folder.is_dir() else set()


def has_native_backend(folder: Path | None) -> bool:
    """Whether a backends folder (--backend-dir) holds an onnxruntime backend."""
    return folder is not None and NATIVE_BACKEND in backends_in(folder)


def _config_or_none(path: Path):
    """A repository's config.pbtxt as Triton's ModelConfig, or None where it is missing or
    does not parse: the server's launcher leaves reporting those to Triton."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except (OSError, text_format.ParseError):
        return None


def config_name(repository: Path, backends: set[str]) -> str | None:
    """None where the server can serve every config.pbtxt as written; PYTHON_CONFIG where it
    has no onnxruntime backend and core models need one (each has a Python-backend alternate);
    ServerError naming the models that need it and have none."""
    if NATIVE_BACKEND in backends:
        return None
    native = [
        path.parent
        for path in sorted(repository.glob("*/config.pbtxt"))
        if (c := _config_or_none(path)) is not None
        and NATIVE_BACKEND in (c.backend, c.platform.removesuffix("_onnx"))
    ]
    orphans = [m.name for m in native if not (m / "configs" / f"{PYTHON_CONFIG}.pbtxt").is_file()]
    if orphans:
        raise ServerError(
            f"{', '.join(orphans)}: need Triton's onnxruntime backend, which this tritonserver "
            "has not, and have no Python-backend alternate (configs/python.pbtxt); give "
            "--backend-dir with an onnxruntime backend, or rebuild them with maas build"
        )
    return PYTHON_CONFIG if native else None


@dataclass(frozen=True)
class StubPython:
    """The Python the Python backend's stubs run: its version picks the stub, its bin/ goes
    first on the server's PATH (a stub finds its environment through `python3` there, as in
    a container) and its library folder on LD_LIBRARY_PATH (the stub links libpython)."""

    executable: Path
    version: str
    libdir: str

    @classmethod
    def of(cls, executable: str | Path | None = None) -> StubPython:
        """This interpreter's (None: its stub links the system's libpython, as it always
        has), or another's, asked of it."""
        if executable is None:
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            return cls(Path(sys.executable), version, "")
        ask = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); "
        ask += "print(sysconfig.get_config_var('LIBDIR') or '')"
        try:
            out = subprocess.run([str(executable), "-c", ask], capture_output=True, text=True,
                                 check=True, timeout=60).stdout.split("\n")  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            raise ServerError(f"cannot run the stubs' Python {executable}: {e}") from None
        return cls(Path(executable), out[0], out[1])

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """`env` with this Python first on PATH and its libpython findable."""
        path = f"{self.executable.parent}{os.pathsep}{env.get('PATH', '')}"
        libs = os.pathsep.join(p for p in (self.libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        return {**env, "PATH": path, "LD_LIBRARY_PATH": libs}


def python_backend_dir(backends: Path, into: Path, version: str | None = None) -> Path:
    """A backends folder like the wheel's, with the Python stub for `version` (default: this
    interpreter's)."""
    version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = backends.parent / "python_backend_stubs" / version / STUB
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton has no Python backend stub for Python {version}")
    for entry in backends.iterdir():
        (into / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    python = into / "python"
    python.unlink()
    python.mkdir()
    for entry in (backends / "python").iterdir():
        # A stub put into the wheel's folder by hand or by another tool may be built for
        # another Python: ours, for this interpreter, takes its place.
        if entry.name != STUB:
            (python / entry.name).symlink_to(entry)
    (python / STUB).symlink_to(stub)
    return into


def server_tensorrt(backends: Path | None) -> tuple[bool, str | None]:
    """(does this tritonserver have a tensorrt backend, the TensorRT version it loads (from
    libnvinfer.so.X.Y.Z), or None when unknown)."""
    folder = (backends or Path("/opt/tritonserver/backends")) / "tensorrt"
    if not folder.is_dir():
        return False, None
    for lib in (folder, Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu")):
        for path in sorted(lib.glob("libnvinfer.so.*.*.*")) if lib.is_dir() else ():
            return True, path.name.removeprefix("libnvinfer.so.")
    return True, None


def plan_problems(repository: Path, has_backend: bool, version: str | None) -> list[str]:
    """What keeps the repository's TensorRT plans from loading on this server, one line each:
    no tensorrt backend, or a plan built by another TensorRT than it loads. The version is
    compared exactly, X.Y.Z (a 4th, build, number in the wheel's version is not in
    libnvinfer's name): TensorRT guarantees a plan only on the release that built it.
    Anything else wrong with a config is left for Triton to report."""
    from maas.build import manifest

    problems = []
    for path in sorted(repository.glob("*/config.pbtxt")):
        config = _config_or_none(path)
        if config is None or config.platform != "tensorrt_plan":
            continue
        if not has_backend:
            problems.append(
                f"{config.name}: a TensorRT plan, and this tritonserver has no tensorrt "
                f"backend (use a Triton container, or build another variant: maas build "
                f"FAMILY --variant onnx)"
            )
            continue
        for number in config.version_policy.specific.versions:
            built = manifest.read(path.parent / str(number))["libraries"].get("tensorrt")
            if version and built and built.split(".")[:3] != version.split(".")[:3]:
                problems.append(
                    f"{config.name} version {number}: plan built with TensorRT {built}, this "
                    f"tritonserver loads TensorRT {version}; rebuild it where they match"
                )
    return problems
