"""Quality gates and the build-time speed figures, for any family's core model.

Every variant is evaluated before it is written, on real held-out data through the served
preprocessing, against the PyTorch model it came from. Each family says what it measures (the
classifier: top-1 accuracy; see build/image_classifier.py) and how much worse a variant may be;
a variant past that fails, and the build stops and writes nothing.

A model is run as `Run`: named input arrays (batch axis first) -> named output arrays.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

Batch = dict[str, np.ndarray]
Run = Callable[[Batch], Batch]


@dataclass(frozen=True)
class Verdict:
    variant: str
    metric: str  # what was measured, e.g. "top-1 accuracy"
    reference: float  # the PyTorch model's value
    value: float  # the variant's
    drop: float  # how much worse the variant is, in `unit` (negative: better)
    tolerance: float  # the most `drop` allowed
    unit: str = "points"
    fmt: str = ".2%"  # how reference and value print
    floor: float | None = None  # the least `value` allowed, whatever PyTorch's is
    # Other conditions the family checks, each a sentence saying what failed.
    problems: tuple[str, ...] = ()
    extra: dict = field(default_factory=dict)  # more figures for the manifest

    @property
    def passed(self) -> bool:
        under_floor = self.floor is not None and self.value < self.floor
        return self.drop <= self.tolerance + 1e-9 and not under_floor and not self.problems

    def message(self) -> str:
        reasons = []
        if self.drop > self.tolerance + 1e-9:
            reasons.append(
                f"{self.drop:.2f} {self.unit} worse, over the tolerance of {self.tolerance:g}"
            )
        if self.floor is not None and self.value < self.floor:
            reasons.append(f"under the floor of {self.floor:{self.fmt}}")
        return (
            f"{self.metric} gate failed for {self.variant}: reference (PyTorch) "
            f"{self.reference:{self.fmt}}, {self.variant} {self.value:{self.fmt}}, "
            + "; ".join([*reasons, *self.problems])
        )

    def record(self) -> dict:
        """For the version's manifest.json."""
        return {
            "metric": self.metric,
            "reference_pytorch": self.reference,
            "variant": self.value,
            "drop": round(self.drop, 4),
            "tolerance": self.tolerance,
            "unit": self.unit,
            **({"floor": self.floor} if self.floor is not None else {}),
            **self.extra,
        }


def in_batches(run: Run, inputs: Batch, batch: int = 64) -> Batch:
    """Run over every row of `inputs`, `batch` rows at a time; outputs concatenated."""
    rows = len(next(iter(inputs.values())))
    parts = [run({k: v[i : i + batch] for k, v in inputs.items()}) for i in range(0, rows, batch)]
    return {name: np.concatenate([p[name] for p in parts]) for name in parts[0]}


@dataclass(frozen=True)
class Speed:
    latency_ms_batch1: float  # median of single-row calls
    images_per_s: dict[int, float]  # batch size -> rows (images, windows, latents) per second


def measure_speed(run: Run, x: Batch, batches=(1, 16, 64), seconds: float = 0.5) -> Speed:
    """In-process figures: each batch size runs for about `seconds` after one warm-up call."""
    throughput, latency = {}, float("nan")
    for b in batches:
        sample = {k: np.ascontiguousarray(np.resize(v, (b, *v.shape[1:]))) for k, v in x.items()}
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
