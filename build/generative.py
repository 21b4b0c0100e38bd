"""What the generative families' gates (build/vae.py, build/gan.py) share: the PSNR bound a
variant's images must keep against PyTorch's, and what the manifest records of the judge."""

from __future__ import annotations

import numpy as np

from maas.runtime.generate import psnr
from maas.training.generative import Judge

PSNR_BOUND_DB = 40.0  # past this the difference is invisible; an fp32 variant is at ~110 dB


def decibels(value: float) -> float | None:
    """For the manifest (JSON has no infinity): identical images -> None."""
    return None if np.isinf(value) else round(value, 2)


def fidelity(images: np.ndarray, pytorch: np.ndarray, what: str) -> tuple[tuple[str, ...], dict]:
    """(the gate's problems, its manifest figures) for a variant's `images` against PyTorch's
    (`what` names them in the message)."""
    value = psnr(images, pytorch)
    problems = ()
    if value < PSNR_BOUND_DB:
        problems = (f"PSNR vs PyTorch's {what} {value:.1f} dB, under the bound of "
                    f"{PSNR_BOUND_DB:g} dB",)  # fmt: skip
    return problems, {"psnr_vs_pytorch_db": decibels(value), "psnr_bound_db": PSNR_BOUND_DB}


def judge_record(judge: Judge) -> dict:
    return {"judge": judge.path, "judge_sha256": judge.sha256}
