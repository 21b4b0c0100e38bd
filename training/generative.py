"""What the generative families (training/vae.py, training/gan.py) share: the digits as
greyscale images, and the judge: the project's own image classifier, which says what digit a
generated or reconstructed image shows (the gates in build/vae.py and build/gan.py use it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from maas.runtime.generate import to_rgb
from maas.training.checkpoint import Checkpoint
from maas.training.data import load_digits
from maas.training.train import predict_logits


@dataclass(frozen=True)
class GreyDigits:
    """The classifier's digits split (same seed, same images), as float32 (N, 1, H, W) in 0..1."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray

    @property
    def size(self) -> int:
        return int(self.train_x.shape[-1])


def grey_digits(seed: int = 0) -> GreyDigits:
    ds = load_digits(seed=seed)  # rendered as RGB with three equal channels

    def grey(x: np.ndarray) -> np.ndarray:
        return np.ascontiguousarray(x[..., :1].transpose(0, 3, 1, 2), np.float32) / 255.0

    return GreyDigits(grey(ds.train_x), ds.train_y, grey(ds.test_x), ds.test_y)


class Judge:
    """The image classifier's checkpoint, in PyTorch: (N, 1, H, W) images in 0..1 -> digits,
    seen as the PNGs the server returns would be seen by the image_classifier pipeline."""

    def __init__(self, checkpoint: str | Path):
        if not Path(checkpoint).is_file():
            raise FileNotFoundError(
                f"no image classifier at {checkpoint}: the generative families are judged by "
                f"it; train it first (`maas train image_classifier`)"
            )
        self.checkpoint = Checkpoint.load(checkpoint)
        self.model = self.checkpoint.build_model()
        self.path = str(checkpoint)
        self.sha256 = hashlib.sha256(Path(checkpoint).read_bytes()).hexdigest()  # which judge

    def logits(self, images: np.ndarray) -> np.ndarray:
        rgb = to_rgb(images)
        height, width = self.checkpoint.input_size
        if rgb.shape[1:3] != (height, width):
            resized = torch.nn.functional.interpolate(
                torch.from_numpy(rgb).permute(0, 3, 1, 2).float(), (height, width),
                mode="bilinear", align_corners=False,
            )  # fmt: skip
            rgb = resized.round().clamp(0, 255).byte().permute(0, 2, 3, 1).numpy()
        return predict_logits(self.model, rgb, self.checkpoint.mean, self.checkpoint.std)

    def digits(self, images: np.ndarray) -> np.ndarray:
        return self.logits(images).argmax(1)


def run_in_batches(model: torch.nn.Module, *inputs: np.ndarray, batch: int = 256) -> np.ndarray:
    """A PyTorch model over numpy rows, in inference mode, batch by batch."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(inputs[0]), batch):
            out.append(model(*(torch.from_numpy(x[i : i + batch]) for x in inputs)).numpy())
    return np.concatenate(out)
