"""Batch augmentation on the CPU: random shifts, small rotations, flips where they keep labels.

One affine warp per image (torch's affine_grid + grid_sample), edge pixels repeated like Keras'
ImageDataGenerator(fill_mode="nearest").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class Augmentation:
    shift: float = 0.1  # fraction of width/height, as Keras' width_shift_range
    rotation_deg: float = 10.0
    hflip: bool = False  # only where a mirrored image keeps its label

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """x: float (N, C, H, W) -> augmented copy."""
        n = x.shape[0]
        angle = (torch.rand(n, generator=generator) * 2 - 1) * math.radians(self.rotation_deg)
        # affine_grid works in [-1, 1] coordinates: a shift of s of the width is 2s there.
        tx, ty = ((torch.rand(2, n, generator=generator) * 2 - 1) * 2 * self.shift).unbind(0)
        flip = torch.ones(n)
        if self.hflip:
            flip = torch.where(torch.rand(n, generator=generator) < 0.5, -1.0, 1.0)
        cos, sin = torch.cos(angle), torch.sin(angle)
        theta = torch.stack(
            [torch.stack([cos * flip, -sin, tx], 1), torch.stack([sin * flip, cos, ty], 1)], 1
        )
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
