"""Calibration data for INT8: real model inputs, as the server feeds the core model."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from maas.build.gate import Batch


def sample(rows: np.ndarray, count: int, seed: int = 0) -> np.ndarray:
    """`count` rows (training images, windows, ...), a seeded sample covering the whole set,
    in their original order."""
    if count < 1:
        raise ValueError(f"calibration needs at least 1 sample, got {count}")
    order = np.random.default_rng(seed).permutation(len(rows))[:count]
    return rows[np.sort(order)]


def calibration_batches(
    samples: Batch, batch_size: int, full_only: bool = False
) -> Iterator[Batch]:
    """Batches of the named model inputs in `samples`.

    full_only drops a last partial batch: a TensorRT calibrator feeds a fixed batch size."""
    rows = len(next(iter(samples.values())))
    stop = rows - rows % batch_size if full_only else rows
    for i in range(0, stop, batch_size):
        yield {name: values[i : i + batch_size] for name, values in samples.items()}
