"""Make each requested variant in a scratch folder, gate it on the held-out set, time it.

Used by `maas build` (which then writes the winner) and by benchmarks/variants.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maas.build import gate, variants
from maas.build.calibration import calibration_images
from maas.build.variants import BuildInputs, Variant
from maas.training.checkpoint import Checkpoint
from maas.training.data import Dataset
from maas.training.train import accuracy, predict_logits
from maas.transforms import normalize


@dataclass
class Candidate:
    variant: Variant
    path: Path | None = None
    verdict: gate.Verdict | None = None
    speed: gate.Speed | None = None
    error: str | None = None
    size_bytes: int = 0

    @property
    def passed(self) -> bool:
        return self.error is None and self.verdict is not None and self.verdict.passed


@dataclass(frozen=True)
class Heldout:
    x: np.ndarray  # normalised float32 NCHW, as the server feeds the classifier
    y: np.ndarray
    reference: float  # the PyTorch model's top-1 accuracy on it


def heldout_set(ckpt: Checkpoint, ds: Dataset) -> Heldout:
    reference = accuracy(
        predict_logits(ckpt.build_model(), ds.test_x, ckpt.mean, ckpt.std), ds.test_y
    )
    return Heldout(normalize(ds.test_x, ckpt.mean, ckpt.std), ds.test_y, reference)


def evaluate(
    ckpt: Checkpoint,
    onnx: Path,
    wanted: list[Variant],
    scratch: Path,
    *,
    tolerance: float | None = None,
    calibration_count: int = 256,
    intra_op_threads: int = 1,
    trt=None,
    speed_seconds: float = 0.5,
    stop_on_error: bool = True,
    dataset: Dataset | None = None,
) -> tuple[list[Candidate], Heldout]:
    ds = dataset or ckpt.load_dataset()
    held = heldout_set(ckpt, ds)
    inputs = BuildInputs(
        onnx=onnx,
        chw=(3, *ckpt.input_size),
        mean=tuple(ckpt.mean),
        std=tuple(ckpt.std),
        calibration=calibration_images(ds.train_x, calibration_count, seed=0),
        trt=trt,
    )
    max_batch = trt.profile.max_batch if trt is not None else 64
    out = []
    for variant in wanted:
        cand = Candidate(variant)
        folder = scratch / variant.name
        folder.mkdir(parents=True)
        try:
            cand.path = variants.produce(variant, inputs, folder)
            cand.size_bytes = cand.path.stat().st_size
            run = variants.runner(variant, cand.path, intra_op_threads, max_batch)
            acc = gate.accuracy(run, held.x, held.y)
            tol = variant.tolerance if tolerance is None else tolerance
            cand.verdict = gate.Verdict(variant.name, held.reference, acc, tol)
            cand.speed = gate.measure_speed(run, held.x, seconds=speed_seconds)
        except Exception as e:
            if stop_on_error:
                raise
            cand.error = f"{type(e).__name__}: {e}".splitlines()[0]
        out.append(cand)
    return out, held


def table(candidates: list[Candidate], chosen: Candidate | None = None) -> str:
    head = f"{'variant':<10} {'MB':>6} {'accuracy':>9} {'drop':>6} {'gate':>5} {'ms@1':>7} "
    head += f"{'img/s@1':>8} {'img/s@16':>9} {'img/s@64':>9}"
    lines = [head]
    for c in candidates:
        mark = "*" if c is chosen else " "
        if c.error or c.verdict is None or c.speed is None:
            lines.append(f"{c.variant.name:<10} failed: {c.error}")
            continue
        v, s = c.verdict, c.speed
        ips = s.images_per_s
        lines.append(
            f"{c.variant.name:<10} {c.size_bytes / 1e6:>6.2f} {v.accuracy:>9.2%} "
            f"{v.drop_points:>6.2f} {'pass' if v.passed else 'FAIL':>5} "
            f"{s.latency_ms_batch1:>7.3f} {ips[1]:>8.0f} {ips[16]:>9.0f} {ips[64]:>9.0f} {mark}"
        )
    return "\n".join(lines)
