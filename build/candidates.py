"""Make each requested variant of a core model in a scratch folder, gate it, time it.

Used by `maas build` (which then writes the winner) and by benchmarks/variants.py. What is
family-specific (the held-out data, the calibration inputs, the gate) comes in a `CoreData`
from the family's build module (build/image_classifier.py).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from maas.build import gate, variants
from maas.build.gate import Batch, Run, Verdict
from maas.build.variants import BuildInputs, Variant
from maas.spec import Step


@dataclass(frozen=True)
class CoreData:
    """What a family gives the build for its core model."""

    core: Step
    calibration: Batch  # real model inputs for INT8 calibration
    sample: Batch  # real model inputs the speed figures run on
    # (run a variant, the variant, a --tolerance override or None) -> its verdict
    gate: Callable[[Run, Variant, float | None], Verdict]
    record: dict = field(default_factory=dict)  # for the manifest: what the gate ran on


@dataclass
class Candidate:
    variant: Variant
    path: Path | None = None
    verdict: Verdict | None = None
    speed: gate.Speed | None = None
    error: str | None = None
    size_bytes: int = 0

    @property
    def passed(self) -> bool:
        return self.error is None and self.verdict is not None and self.verdict.passed


def evaluate(
    data: CoreData,
    onnx: Path,
    wanted: list[Variant],
    scratch: Path,
    *,
    tolerance: float | None = None,
    intra_op_threads: int = 1,
    trt=None,
    speed_seconds: float = 0.5,
    stop_on_error: bool = True,
) -> list[Candidate]:
    inputs = BuildInputs(onnx=onnx, core=data.core, calibration=data.calibration, trt=trt)
    max_batch = trt.profile.max_batch if trt is not None else 64
    out = []
    for variant in wanted:
        cand = Candidate(variant)
        folder = scratch / variant.name
        folder.mkdir(parents=True)
        try:
            cand.path = variants.produce(variant, inputs, folder)
            cand.size_bytes = cand.path.stat().st_size
            run = variants.runner(variant, cand.path, data.core, intra_op_threads, max_batch)
            cand.verdict = data.gate(run, variant, tolerance)
            cand.speed = gate.measure_speed(run, data.sample, seconds=speed_seconds)
        except Exception as e:
            if stop_on_error:
                raise
            cand.error = f"{type(e).__name__}: {e}".splitlines()[0]
        out.append(cand)
    return out


def table(candidates: list[Candidate], chosen: Candidate | None = None) -> str:
    head = f"{'variant':<10} {'MB':>6} {'quality':>9} {'drop':>6} {'gate':>5} {'ms@1':>7} "
    head += f"{'rows/s@1':>8} {'rows/s@16':>9} {'rows/s@64':>9}"
    lines = [head]
    for c in candidates:
        mark = "*" if c is chosen else " "
        if c.error or c.verdict is None or c.speed is None:
            lines.append(f"{c.variant.name:<10} failed: {c.error}")
            continue
        v, s = c.verdict, c.speed
        ips = s.images_per_s
        lines.append(
            f"{c.variant.name:<10} {c.size_bytes / 1e6:>6.2f} {v.value:>9{v.fmt}} "
            f"{v.drop:>6.2f} {'pass' if v.passed else 'FAIL':>5} "
            f"{s.latency_ms_batch1:>7.3f} {ips[1]:>8.0f} {ips[16]:>9.0f} {ips[64]:>9.0f} {mark}"
        )
    return "\n".join(lines)
