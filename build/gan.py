"""The GAN's part of the build: the generator, gated on what it draws, judged by the project's
image classifier (training/generative.Judge), never by eye.

Each variant draws 100 images of every digit (the noise rows the served gan_noise would make
for seeds 1000..1009) and fails when
- for some digit, fewer than 90% of its images are recognised as that digit (the floor), or
  the worst digit's share is more than 2 points under PyTorch's (`--tolerance`);
- its images differ from PyTorch's by more than the PSNR bound allows (under 40 dB).
The manifest records the share per digit and each digit's diversity (mean pairwise distance of
its images, beside the same figure for real test digits), so mode collapse shows.
"""

from __future__ import annotations

import numpy as np

from maas import catalog
from maas.build.candidates import CoreData
from maas.build.gate import Run, Verdict, in_batches
from maas.build.generative import fidelity, judge_record
from maas.build.variants import Variant
from maas.runtime import names as C
from maas.runtime.generate import latents, mean_pairwise_distance, one_hot
from maas.spec import Step
from maas.training.gan import CLASSES, GANCheckpoint
from maas.training.generative import Judge, run_in_batches

TOLERANCE_POINTS = 2.0
FLOOR = 0.90
PER_DIGIT = 100


def load(checkpoint) -> GANCheckpoint:
    return GANCheckpoint.load(checkpoint)


def pipelines(ckpt: GANCheckpoint, opts, onnx=()) -> tuple:
    return (catalog.gan(ckpt.noise, CLASSES, max_count=opts.max_batch_size),)


def core_data(ckpt: GANCheckpoint, core: Step, calibration_count: int = 256) -> CoreData:
    judge = Judge(ckpt.config["judge"])
    digits = np.repeat(np.arange(CLASSES), PER_DIGIT)
    inputs = {
        C.NOISE: np.concatenate([latents(1000 + d, PER_DIGIT, ckpt.noise) for d in range(CLASSES)]),
        C.CONDITION: np.concatenate([one_hot(d, PER_DIGIT, CLASSES) for d in range(CLASSES)]),
    }
    pytorch = run_in_batches(ckpt.build_model(), inputs[C.NOISE], inputs[C.CONDITION])

    def recognised(images: np.ndarray) -> dict[str, float]:
        hits = judge.digits(images) == digits
        return {str(d): float(hits[digits == d].mean()) for d in range(CLASSES)}

    reference = min(recognised(pytorch).values())

    def gate(run: Run, variant: Variant, tolerance: float | None) -> Verdict:
        images = in_batches(run, inputs)[C.DECODED]
        rates = recognised(images)
        value = min(rates.values())
        problems, figures = fidelity(images, pytorch, "images")
        return Verdict(
            variant=variant.name,
            metric="worst digit: drawn images recognised as that digit",
            reference=reference,
            value=value,
            drop=(reference - value) * 100,
            tolerance=TOLERANCE_POINTS if tolerance is None else tolerance,
            floor=FLOOR,
            problems=problems,
            extra={
                "recognised_per_digit": rates,
                "diversity_per_digit": {
                    str(d): round(mean_pairwise_distance(images[digits == d]), 3)
                    for d in range(CLASSES)
                },
                "diversity_real_test_digits": ckpt.metrics.get("diversity_real_test", {}),
                **figures,
                **judge_record(judge),
            },
        )

    return CoreData(
        core=core,
        calibration=inputs,
        sample=inputs,
        gate=gate,
        record={"images_per_digit": PER_DIGIT},
    )
