"""The workspace: where each family's artifacts live (one layout, Paths), and building
whatever is missing or stale, every family, in order (`make serve`, `maas demo`, `maas build`
without a family).

Artifacts live in artifacts/ (--artifacts): the image classifier's checkpoint.pt, model.onnx,
training_curves.png and samples/ at the top, each other family's in artifacts/<family>/.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from maas.families import FAMILIES, resolve, train

SAMPLE_FORMATS = ("png", "jpeg", "webp", "bmp", "gif", "tiff")
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Paths:
    """The artifacts folder and the repository built from it; each family's files in it."""

    artifacts: Path = Path("artifacts")
    repository: Path = Path("model_repository")

    def checkpoint(self, family: str = "image_classifier") -> Path:
        return self.artifacts / FAMILIES[family].artifacts / "checkpoint.pt"

    def onnx(self, family: str = "image_classifier") -> Path:
        """The family's first ONNX file (the others lie beside it: Family.onnx_files)."""
        return self.artifacts / FAMILIES[family].artifacts / FAMILIES[family].onnx[0]

    @property
    def samples(self) -> Path:
        """A few held-out images in every format we decode: what the demo sends."""
        return self.artifacts / "samples"


def _newer(path: Path, than: Path) -> bool:
    return path.exists() and path.stat().st_mtime >= than.stat().st_mtime


def ensure_built(
    paths: Paths,
    data_dir: str | None = None,
    epochs: int | None = None,
    only: list[str] | None = None,
    opts=None,
) -> None:
    """For every family (or those in `only`): train, export and build (with the serving
    options `opts`, default ServingOptions()) whatever is missing or older than its input;
    then the classifier's sample images."""
    from maas.build.configs import ServingOptions
    from maas.build.repository import build_repository

    opts = opts or ServingOptions()
    for family in (FAMILIES[name] for name in only or FAMILIES):
        checkpoint, onnx = paths.checkpoint(family.name), paths.onnx(family.name)
        if not checkpoint.exists():
            log.info("no %s checkpoint at %s: training on its defaults", family.name, checkpoint)
            train(family, out=str(checkpoint), data_dir=data_dir, epochs=epochs)
        if not _newer(onnx, checkpoint):
            log.info("exporting %s -> %s", checkpoint, onnx)
            resolve(family.export)(checkpoint, onnx)
        stage = resolve(family.build)
        served = stage.pipelines(stage.load(checkpoint), opts, family.onnx_files(onnx))
        models = {p.name for p in served} | {s.model for p in served for s in p.steps}
        if not all(_newer(paths.repository / m / "config.pbtxt", onnx) for m in models):
            log.info("building %s into %s (every variant this machine can build)",
                     family.name, paths.repository)  # fmt: skip
            build_repository(checkpoint, onnx, paths.repository, opts, family=family.name)
    classifier = paths.checkpoint()
    if (only is None or "image_classifier" in only) and not _newer(paths.samples, classifier):
        write_samples(paths)


def heldout(checkpoint: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """The checkpoint's held-out test split: uint8 images, labels, class names."""
    from maas.training.checkpoint import Checkpoint

    ckpt = Checkpoint.load(checkpoint)
    ds = ckpt.load_dataset()
    return ds.test_x, ds.test_y, ckpt.class_names


def write_samples(paths: Paths, count: int = len(SAMPLE_FORMATS)) -> list[Path]:
    """A few held-out images, 4x enlarged, one per supported format: what the demo sends."""
    images, labels, names = heldout(paths.checkpoint())
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
