"""The forecaster's part of the build: its held-out test windows, and the MAE gate.

A variant fails when its mean absolute error on the test windows (ppm, every step of every
window, after scaling back as the server does) is more than its tolerance (1%; `--tolerance`)
above the PyTorch model's.
"""

from __future__ import annotations

from maas import catalog
from maas.build.calibration import sample
from maas.build.candidates import CoreData
from maas.build.gate import Run, Verdict, in_batches
from maas.build.variants import Variant
from maas.runtime import names as C
from maas.runtime.series import unscale
from maas.spec import Step
from maas.training.rnn import ForecasterCheckpoint, errors, load_co2, predict, scaled, split

TOLERANCE_PERCENT = 1.0


def load(checkpoint) -> ForecasterCheckpoint:
    return ForecasterCheckpoint.load(checkpoint)


def pipelines(ckpt: ForecasterCheckpoint, opts, onnx=()) -> tuple:
    """The forecaster ensemble, and the stream over the same network (forecaster_rnn)."""
    return catalog.forecaster(ckpt.spec()), catalog.forecaster_stream(ckpt.spec())


def core_data(ckpt: ForecasterCheckpoint, core: Step, calibration_count: int = 256) -> CoreData:
    parts = split(load_co2(), ckpt.window["length"], ckpt.window["horizon"])
    x, _, loc, scale = scaled(parts["test"], ckpt.window["length"])
    truth = parts["test"].y
    reference = errors(unscale(predict(ckpt.build_model(), x), loc, scale), truth)["mae"]

    def gate(run: Run, variant: Variant, tolerance: float | None) -> Verdict:
        got = unscale(in_batches(run, {C.WINDOW: x})[C.SCALED_FORECAST], loc, scale)
        value = errors(got, truth)["mae"]
        return Verdict(
            variant=variant.name,
            metric="test MAE (ppm)",
            reference=reference,
            value=value,
            drop=(value - reference) / reference * 100,
            tolerance=TOLERANCE_PERCENT if tolerance is None else tolerance,
            unit="%",
            fmt=".4f",
        )

    train_x = scaled(parts["train"], ckpt.window["length"])[0]
    return CoreData(
        core=core,
        calibration={C.WINDOW: sample(train_x, min(calibration_count, len(train_x)))},
        sample={C.WINDOW: x},
        gate=gate,
        record={"test_windows": len(x)},
    )
