"""Train, export and build whatever is missing or stale, in order (`make serve`, `maas demo`).

Artifacts live in artifacts/: checkpoint.pt, model.onnx, training_curves.png and samples/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from maas import contract as C

SAMPLE_FORMATS = ("png", "jpeg", "webp", "bmp", "gif", "tiff")


@dataclass(frozen=True)
class Paths:
    artifacts: Path = Path("artifacts")
    repository: Path = Path("model_repository")
    checkpoint: Path = field(init=False)
    onnx: Path = field(init=False)
    samples: Path = field(init=False)

    def __post_init__(self):
        object.__setattr__(self, "checkpoint", self.artifacts / "checkpoint.pt")
        object.__setattr__(self, "onnx", self.artifacts / "model.onnx")
        object.__setattr__(self, "samples", self.artifacts / "samples")


def _newer(path: Path, than: Path) -> bool:
    return path.exists() and path.stat().st_mtime >= than.stat().st_mtime


def ensure_built(paths: Paths, data_dir: str | None = None, epochs: int | None = None) -> None:
    """Run each stage whose output is missing or older than its input."""
    from maas.build.repository import build_repository
    from maas.training.export import export
    from maas.training.train import TrainConfig, train

    if not paths.checkpoint.exists():
        print(f"[maas] no checkpoint at {paths.checkpoint}: training on the default dataset")
        cfg = TrainConfig(data_dir=data_dir, out=str(paths.checkpoint))
        if epochs is not None:
            cfg.epochs = epochs
        train(cfg)
    if not _newer(paths.onnx, paths.checkpoint):
        print(f"[maas] exporting {paths.checkpoint} -> {paths.onnx}")
        export(paths.checkpoint, paths.onnx)
    built = paths.repository / C.ENSEMBLE / "config.pbtxt"
    if not (
        _newer(built, paths.onnx) and (paths.repository / C.CLASSIFIER / "config.pbtxt").exists()
    ):
        print(f"[maas] building {paths.repository} (every variant this machine can build)")
        build_repository(paths.checkpoint, paths.onnx, paths.repository)
    if not _newer(paths.samples, paths.checkpoint):
        write_samples(paths)


def heldout(checkpoint: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The checkpoint's held-out test split: uint8 images, labels, class names."""
    from maas.training.checkpoint import Checkpoint

    ckpt = Checkpoint.load(checkpoint)
    ds = ckpt.load_dataset()
    return ds.test_x, ds.test_y, ckpt.class_names


def write_samples(paths: Paths, count: int = len(SAMPLE_FORMATS)) -> list[Path]:
    """A few held-out images, 4x enlarged, one per supported format: what the demo sends."""
    images, labels, names = heldout(paths.checkpoint)
    paths.samples.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(min(count, len(images))):
        fmt = SAMPLE_FORMATS[i % len(SAMPLE_FORMATS)]
        img = Image.fromarray(images[i]).resize((images.shape[2] * 4, images.shape[1] * 4))
        label = "".join(ch if ch.isalnum() else "-" for ch in names[labels[i]])
        path = paths.samples / f"{i:02d}_{label}.{fmt}"
        img.save(path)
        out.append(path)
    paths.samples.touch()
    return out
