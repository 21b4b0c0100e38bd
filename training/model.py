"""The classic small CNN of the Keras CIFAR-10 example, width configurable.

conv(w) -> pool -> conv(2w) -> pool -> conv(2w) -> dense(2w) -> dense(classes); w=32 by default.
Inputs are normalised float32 (N, 3, H, W); outputs are logits (N, classes). `Normalized` puts
the normalisation in front: what is exported takes pixel values.
"""

from __future__ import annotations

import torch
from torch import nn


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32, input_size: int = 32):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(3, w, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(w, 2 * w, 3), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 2 * w, 3), nn.ReLU(),
        )  # fmt: skip
        side = ((input_size - 2) // 2 - 2) // 2 - 2  # 32 -> 30 -> 15 -> 13 -> 6 -> 4
        if side < 1:
            raise ValueError(f"input_size {input_size} is too small for this CNN (minimum 18)")
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * w * side * side, 2 * w), nn.ReLU(),
            nn.Linear(2 * w, num_classes),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class Normalized(nn.Module):
    """What is exported and served: `model` behind its own normalisation, so the network takes
    RGB pixel values (0..255, float32 NCHW), what any Triton client sends with scaling NONE.
    The same arithmetic as maas.runtime.images.normalize (x * 1/(255 std) - mean/std, float32),
    so served logits equal the training code's."""

    def __init__(self, model: nn.Module, mean, std):
        super().__init__()
        self.model = model
        mean = torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1)
        std = torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1)
        self.register_buffer("scale", torch.tensor(1.0 / 255.0, dtype=torch.float32) / std)
        self.register_buffer("shift", mean / std)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model(pixels * self.scale - self.shift)
