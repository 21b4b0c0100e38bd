"""manifest.json, one per version of every core model: what was built, from what, how good,
how fast, on what (a TensorRT plan only loads on the TensorRT version and GPU compute
capability that built it, the most common Triton support question), and what the Python steps
around it assumed (`assumes`): a version is served only beside steps that assume the same.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path

FILE = "manifest.json"  # in each version's folder
# Config parameters that say how a step was built, not what it assumes.
STAMPS = {"maas_version", "maas_runtime_sha256", "EXECUTION_ENV_PATH"}


def read(version_folder: Path) -> dict:
    """A version's manifest; {} for a version maas did not build (it has none)."""
    path = version_folder / FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def write(version_folder: Path, entry: dict) -> None:
    version_folder.mkdir(parents=True, exist_ok=True)
    (version_folder / FILE).write_text(json.dumps(entry, indent=2) + "\n")


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dist in ("onnxruntime", "onnx", "torch", "tensorrt", "numpy", "pillow", "maas"):
        try:
            out[dist] = importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            out[dist] = None
    return out


def host() -> dict[str, str]:
    return {
        "hostname": socket.gethostname(),
        "machine": platform.machine(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "built_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


def assumptions(root: Path, core: str) -> dict[str, str]:
    """What the Python steps around the core model `core` assume of it, as built in the
    repository `root`: per step of every pipeline that runs it (an ensemble's steps, and a
    step that calls it through its `network` parameter), a sha256 of the step's parameters,
    tensors and data files (labels); and of the core's own data files. Versions whose records
    differ must not be served with the same steps."""
    from maas.build.configs import read_config

    configs = {p.parent.name: read_config(p) for p in sorted(root.glob("*/config.pbtxt"))}
    around = {
        s.model_name
        for c in configs.values()
        if any(s.model_name == core for s in c.ensemble_scheduling.step)
        for s in c.ensemble_scheduling.step
    }
    around |= {n for n, c in configs.items() if "network" in c.parameters and
               c.parameters["network"].string_value == core}  # fmt: skip
    steps = {n for n in around if n in configs and configs[n].backend == "python"}
    record = {name: _fingerprint(root / name, configs[name]) for name in sorted(steps)}
    return {**record, core: _fingerprint(root / core)}  # the core: its data files alone


def _fingerprint(folder: Path, config=None) -> str:
    described = {
        "files": {f.name: sha256(f) for f in sorted(folder.iterdir()) if f.is_file() and
                  f.name != "config.pbtxt"},
    }  # fmt: skip
    if config is not None:
        described |= {
            "parameters": {k: v.string_value for k, v in config.parameters.items()
                           if k not in STAMPS},
            "inputs": {t.name: list(t.dims) for t in config.input},
            "outputs": {t.name: list(t.dims) for t in config.output},
        }  # fmt: skip
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()


def differences(old: dict[str, str], new: dict[str, str]) -> list[str]:
    """The steps whose assumptions differ between two records, in words."""

    def how(name: str) -> str:
        return "differs" if name in old and name in new else "is new" if name in new else "is gone"

    return [
        f"{name} {how(name)}"
        for name in sorted(set(old) | set(new))
        if old.get(name) != new.get(name)
    ]
