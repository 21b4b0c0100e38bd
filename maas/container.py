"""A Python like the one NVIDIA's Triton container gives its Python backend, made here: the
container's version (3.10 for Triton 24.10) where this machine has one, with numpy<2 and
nothing else. The deployable-repository test and benchmark serve with it, to prove that a
built repository needs nothing of maas, Pillow or ONNX Runtime where it is served.

    python = container_python()       # made once, kept inside this venv
"""

from __future__ import annotations

import glob
import shutil
import subprocess
import sys
from pathlib import Path

from maas.build.release import CONTAINER_PYTHON

NUMPY = "numpy==1.26.4"  # constraints.txt's, the container's numpy<2
OURS = f"{sys.version_info.major}.{sys.version_info.minor}"


def find_python(version: str) -> str | None:
    """An interpreter of `version` on this machine (on PATH, or pyenv's), or None."""
    candidates = [shutil.which(f"python{version}")]
    candidates += sorted(glob.glob(str(Path.home() / f".pyenv/versions/{version}.*/bin/python3")))
    for path in filter(None, candidates):
        if (
            subprocess.run([path, "-c", "import sys"], capture_output=True, timeout=60).returncode
            == 0
        ):
            return path
    return None


def venv_with(folder: Path, base: str, *packages: str) -> Path:
    """A virtual environment of `base` holding `packages` alone, made once and kept; its
    python."""
    python = folder / "bin" / "python"
    if not (folder / ".complete").is_file():
        shutil.rmtree(folder, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(folder)], check=True, timeout=300)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *packages], check=True, timeout=600)  # fmt: skip
        (folder / ".complete").touch()
    return python


def container_python() -> Path:
    """The stubs' Python of a stock container, kept inside this venv (so a new venv starts
    afresh): numpy<2 alone, on Python 3.10 where there is one, else on this Python."""
    version = CONTAINER_PYTHON if find_python(CONTAINER_PYTHON) else OURS
    base = find_python(version) or sys.executable
    return venv_with(Path(sys.prefix) / f"maas-container-python{version}", base, NUMPY)
