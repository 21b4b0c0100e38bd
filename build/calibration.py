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


def calibration_batches(samples: Batch, batch_size: int) -> Iterator[Batch]:
    """Batches of the named model inputs in `samples` (onnxruntime.quantization calibrates on
    them, for ort-int8 and trt-int8 alike)."""
    rows = len(next(iter(samples.values())))
    for i in range(0, rows, batch_size):
        yield {name: values[i : i + batch_size] for name, values in samples.items()}
