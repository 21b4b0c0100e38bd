"""Calibration data for INT8: real training images through the served preprocessing."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from maas.transforms import normalize


def calibration_images(train_x: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`count` training images (uint8 NHWC), a seeded sample covering the whole set."""
    if count < 1:
        raise ValueError(f"calibration needs at least 1 image, got {count}")
    order = np.random.default_rng(seed).permutation(len(train_x))[:count]
    return train_x[np.sort(order)]


def calibration_batches(
    images: np.ndarray, mean, std, batch_size: int, full_only: bool = False
) -> Iterator[np.ndarray]:
    """Normalised float32 NCHW batches, exactly what the served classifier receives.

    full_only drops a last partial batch: a TensorRT calibrator feeds a fixed batch size."""
    stop = len(images) - len(images) % batch_size if full_only else len(images)
    for i in range(0, stop, batch_size):
        yield normalize(images[i : i + batch_size], mean, std)
