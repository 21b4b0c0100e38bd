"""Train, export and build whatever is missing or stale, every family, in order (`make serve`,
`maas demo`, `maas build` without a family).

Artifacts live in artifacts/: the image classifier's checkpoint.pt, model.onnx,
training_curves.png and samples/ at the top, each other family's in artifacts/<family>/.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from maas.families import FAMILIES, resolve, train

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


def ensure_built(
    paths: Paths,
    data_dir: str | None = None,
    epochs: int | None = None,
    only: list[str] | None = None,
) -> None:
    """For every family (or those in `only`): train, export and build whatever is missing or
    older than its input; then the classifier's sample images."""
    from maas.build.configs import ServingOptions
    from maas.build.repository import build_repository

    for family in (FAMILIES[name] for name in only or FAMILIES):
        checkpoint, onnx = family.paths(paths.artifacts)
        if not checkpoint.exists():
            print(f"[maas] no {family.name} checkpoint at {checkpoint}: training on its defaults")
            train(family, out=str(checkpoint), data_dir=data_dir, epochs=epochs)
        if not _newer(onnx, checkpoint):
            print(f"[maas] exporting {checkpoint} -> {onnx}")
            resolve(family.export)(checkpoint, onnx)
        stage = resolve(family.build)
        served = stage.pipelines(stage.load(checkpoint), ServingOptions(), family.onnx_files(onnx))
        models = {p.name for p in served} | {s.model for p in served for s in p.steps}
        if not all(_newer(paths.repository / m / "config.pbtxt", onnx) for m in models):
            print(f"[maas] building {family.name} into {paths.repository} (every variant this "
                  f"machine can build)")  # fmt: skip
            build_repository(checkpoint, onnx, paths.repository, family=family.name)
    if (only is None or "image_classifier" in only) and not _newer(paths.samples, paths.checkpoint):
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
