"""The image classifier's part of the build: held-out images through the served preprocessing,
INT8 calibration images, and the top-1 gate.

A variant fails when its top-1 accuracy on the held-out set falls more than its tolerance
(0.5 points for fp32/fp16, 1.0 for int8; `--tolerance`) below the PyTorch model's.
"""

from __future__ import annotations

import dataclasses

from maas import catalog
from maas.build.calibration import sample
from maas.build.candidates import CoreData
from maas.build.gate import Run, Verdict, in_batches
from maas.build.variants import Variant
from maas.runtime import names as C
from maas.runtime.images import layout
from maas.spec import Step
from maas.training.checkpoint import Checkpoint
from maas.training.data import Dataset
from maas.training.train import accuracy, predict_logits


def load(checkpoint) -> Checkpoint:
    return Checkpoint.load(checkpoint)


def pipelines(ckpt: Checkpoint, opts, onnx=()) -> tuple:
    """The declaration for this checkpoint, with the build's serving options."""
    pre = dataclasses.replace(ckpt.preprocessing(), max_pixels=opts.max_pixels)
    return (catalog.image_classifier(pre, ckpt.class_names, opts.top_k),)


def core_data(
    ckpt: Checkpoint, core: Step, calibration_count: int = 256, dataset: Dataset | None = None
) -> CoreData:
    ds = dataset or ckpt.load_dataset()
    reference = accuracy(
        predict_logits(ckpt.build_model(), ds.test_x, ckpt.mean, ckpt.std), ds.test_y
    )
    heldout = {C.PIXELS: layout(ds.test_x)}  # what the server feeds it: pixel values

    def gate(run: Run, variant: Variant, tolerance: float | None) -> Verdict:
        value = accuracy(in_batches(run, heldout)[C.LOGITS], ds.test_y)
        return Verdict(
            variant=variant.name,
            metric="top-1 accuracy",
            reference=reference,
            value=value,
            drop=(reference - value) * 100,
            tolerance=variant.tolerance if tolerance is None else tolerance,
        )

    images = sample(ds.train_x, calibration_count, seed=0)
    return CoreData(
        core=core,
        calibration={C.PIXELS: layout(images)},
        sample=heldout,
        gate=gate,
        record={"heldout_images": len(ds.test_y)},
    )
