"""The accuracy gate and the build-time speed figures.

Every variant is evaluated on the held-out set through the served preprocessing before it is
written. It fails when its top-1 accuracy falls more than `tolerance` points below the PyTorch
model's; the build then stops and writes nothing.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

Run = Callable[[np.ndarray], np.ndarray]


class GateError(RuntimeError):
    """A variant lost more accuracy than allowed; nothing was written."""


@dataclass(frozen=True)
class Verdict:
    variant: str
    reference: float  # PyTorch top-1 accuracy, 0..1
    accuracy: float
    tolerance: float  # points

    @property
    def drop_points(self) -> float:
        return (self.reference - self.accuracy) * 100

    @property
    def passed(self) -> bool:
        return self.drop_points <= self.tolerance + 1e-9

    def message(self) -> str:
        return (
            f"accuracy gate failed for {self.variant}: reference (PyTorch) {self.reference:.2%}, "
            f"{self.variant} {self.accuracy:.2%}, a drop of {self.drop_points:.2f} points over the "
            f"tolerance of {self.tolerance:g}"
        )


def accuracy(run: Run, x: np.ndarray, y: np.ndarray, batch: int = 64) -> float:
    logits = np.concatenate([run(x[i : i + batch]) for i in range(0, len(x), batch)])
    return float((logits.argmax(1) == y).mean())


@dataclass(frozen=True)
class Speed:
    latency_ms_batch1: float  # median of single-image calls
    images_per_s: dict[int, float]  # batch size -> throughput


def measure_speed(run: Run, x: np.ndarray, batches=(1, 16, 64), seconds: float = 0.5) -> Speed:
    """In-process figures: each batch size runs for about `seconds` after one warm-up call."""
    throughput, latency = {}, float("nan")
    for b in batches:
        sample = np.ascontiguousarray(np.resize(x, (b, *x.shape[1:])))
        run(sample)
        times = []
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 3:
            start = time.perf_counter()
            run(sample)
            times.append(time.perf_counter() - start)
        throughput[b] = b * len(times) / sum(times)
        if b == 1:
            latency = statistics.median(times) * 1e3
    return Speed(latency, throughput)
