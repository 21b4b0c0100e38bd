"""What makes a Python-backend model folder self-contained: the step's code, shipped with it.

    <model>/config.pbtxt      parameters: the step's own, maas_version, maas_runtime_sha256,
                              EXECUTION_ENV_PATH (its env/: an activate script that drops the
                              server's storage keys, and the packages a step needs beyond
                              numpy: the image steps, Pillow; build/environment.py)
    <model>/1/model.py        one import: `from maas_runtime.images import Preprocess as
                              TritonPythonModel`
    <model>/1/maas_runtime/   maas.runtime as installed where the build ran

Triton's Python backend puts the version folder on the stub's sys.path, so `maas_runtime`
imports there, under a name of its own (an installed maas would not shadow it, nor it maas).
Two models built by different maas versions never share a stub process, so each runs the
runtime it was built with; the stamps say which. A step declared by a file (a model.py of a
test or a benchmark) is copied in as model.py, with the runtime beside it all the same.
"""

from __future__ import annotations

import hashlib
import importlib
import shutil
from pathlib import Path

import maas
from maas import runtime
from maas.errors import StepDeclarationError
from maas.runtime.step import StepModel

RUNTIME = Path(runtime.__file__).parent
PACKAGE = "maas_runtime"  # the runtime's name inside a model folder


def step_class(adapter: str) -> type[StepModel]:
    """'images.Preprocess' -> maas.runtime.images.Preprocess."""
    module, _, name = adapter.rpartition(".")
    try:
        found = getattr(importlib.import_module(f"maas.runtime.{module}"), name)
    except (ImportError, AttributeError, ValueError):
        raise StepDeclarationError(f"no step class {adapter!r} in maas.runtime") from None
    if not (isinstance(found, type) and issubclass(found, StepModel)):
        raise StepDeclarationError(f"maas.runtime.{adapter} is not a StepModel")
    return found


def is_file(adapter: str) -> bool:
    return adapter.endswith(".py")


def check(step) -> type[StepModel] | None:
    """The step's class, its declared parameters checked against the class's PARAMETERS
    (None for a step declared by a file)."""
    if is_file(step.adapter):
        return None
    cls = step_class(step.adapter)
    if set(step.config_parameters) != set(cls.PARAMETERS):
        raise StepDeclarationError(
            f"{step.model}: declared parameters {sorted(step.config_parameters)}, but "
            f"{step.adapter} reads {sorted(cls.PARAMETERS)}"
        )
    return cls


def runtime_files() -> list[Path]:
    return sorted(p for p in RUNTIME.glob("*.py"))


def runtime_sha256() -> str:
    """What the runtime's files hash to (names and contents): the stamp in each config."""
    digest = hashlib.sha256()
    for path in runtime_files():
        digest.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def stamps() -> dict[str, str]:
    return {"maas_version": maas.__version__, "maas_runtime_sha256": runtime_sha256()}


def model_py(adapter: str) -> str:
    module, _, name = adapter.rpartition(".")
    return (
        f'"""Written by maas build {maas.__version__}: this model is {name}, from {PACKAGE}/ '
        f'beside\nthis file (maas.runtime as installed at build time)."""\n\n'
        f"from {PACKAGE}.{module} import {name} as TritonPythonModel  # noqa: F401\n"
    )


def write_version(folder: Path, adapter: str) -> None:
    """A version folder of a Python-backend model: model.py and the runtime beside it."""
    folder.mkdir(parents=True, exist_ok=True)
    if is_file(adapter):
        shutil.copy2(adapter, folder / "model.py")
    else:
        (folder / "model.py").write_text(model_py(adapter))
    (folder / PACKAGE).mkdir()
    for path in runtime_files():
        shutil.copy2(path, folder / PACKAGE / path.name)
