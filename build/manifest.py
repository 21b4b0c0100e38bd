"""manifest.json, one per classifier version: what was built, from what, how good, how fast,
and on what: a TensorRT plan only loads on the TensorRT version and GPU compute capability
that built it, the most common Triton support question."""

from __future__ import annotations

import hashlib
import importlib.metadata
import platform
import socket
from datetime import datetime, timezone
from pathlib import Path


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
