"""The VAE's part of the build: two core models (vae_encoder, vae_decoder), each gated on what
users get back, reconstructions of the held-out test digits, judged by the project's image
classifier (training/generative.Judge).

A variant of either network is run with PyTorch's other half. It fails when
- fewer than 95% of the reconstructions keep the digit the classifier sees in the original
  (the floor), or more than 1 point fewer than with PyTorch's networks (`--tolerance`);
- its reconstructions differ from PyTorch's by more than the PSNR bound allows (under 40 dB:
  beyond that the difference is invisible; an fp32 variant is at ~110 dB).
"""

from __future__ import annotations

import numpy as np

from maas import catalog
from maas.build.calibration import sample
from maas.build.candidates import CoreData
from maas.build.gate import Run, Verdict, in_batches
from maas.build.generative import decibels, fidelity, judge_record
from maas.build.variants import Variant
from maas.runtime import names as C
from maas.runtime.generate import psnr
from maas.spec import Step
from maas.training.generative import Judge, grey_digits, run_in_batches
from maas.training.vae import VAECheckpoint, to_pixels

TOLERANCE_POINTS = 1.0
FLOOR = 0.95


def load(checkpoint) -> VAECheckpoint:
    return VAECheckpoint.load(checkpoint)


def pipelines(ckpt: VAECheckpoint, opts, onnx=()) -> tuple:
    return catalog.vae(ckpt.latent, max_count=opts.max_batch_size)


def core_data(ckpt: VAECheckpoint, core: Step, calibration_count: int = 256) -> CoreData:
    judge = Judge(ckpt.config["judge"])
    data = grey_digits()
    originals = data.test_x
    seen = judge.digits(originals)  # what the classifier sees in each original
    encoder, decoder = ckpt.encoder(), ckpt.decoder()
    pixels = to_pixels(originals)
    codes = run_in_batches(encoder, pixels)
    pytorch = run_in_batches(decoder, codes)
    train = sample(data.train_x, calibration_count, seed=0)

    def kept(images: np.ndarray) -> float:
        return float((judge.digits(images) == seen).mean())

    if core.model == C.VAE_ENCODER:
        inputs = {C.PIXELS: pixels}
        calibration = {C.PIXELS: to_pixels(train)}

        def reconstructions(run: Run) -> np.ndarray:
            return run_in_batches(decoder, in_batches(run, inputs)[C.LATENT])
    else:
        inputs = {C.LATENT: codes}
        calibration = {C.LATENT: run_in_batches(encoder, to_pixels(train))}

        def reconstructions(run: Run) -> np.ndarray:
            return in_batches(run, inputs)[C.DECODED]

    reference = kept(pytorch)

    def gate(run: Run, variant: Variant, tolerance: float | None) -> Verdict:
        images = reconstructions(run)
        value = kept(images)
        problems, figures = fidelity(images, pytorch, "reconstructions")
        return Verdict(
            variant=variant.name,
            metric="reconstructions keeping their digit",
            reference=reference,
            value=value,
            drop=(reference - value) * 100,
            tolerance=TOLERANCE_POINTS if tolerance is None else tolerance,
            floor=FLOOR,
            problems=problems,
            extra={
                **figures,
                "psnr_vs_originals_db": decibels(psnr(images, originals)),
                **judge_record(judge),
            },
        )

    return CoreData(
        core=core,
        calibration=calibration,
        sample=inputs,
        gate=gate,
        record={"heldout_images": len(originals)},
    )
