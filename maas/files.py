"""Files written whole or not at all: a reader (a training run resumed, Triton, nginx, a
Kubernetes Secret made from the file) never sees half of one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def atomic_write(path: str | Path, write, mode: int = 0o600) -> None:
    """Call write(file) on a temporary binary file beside `path` (private from its creation,
    mkstemp's, then `mode`), flush it to disk, then rename it into place (a link at `path` is
    replaced, not followed); on any error nothing is left."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        if mode != 0o600:
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
