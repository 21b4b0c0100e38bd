"""The model families maas trains, builds and serves: one row each, pointing at the module of
each stage that differs per family (as transformers' task table points at pipeline classes).

    family            train / export            build (pipeline + gate)      serves
    image_classifier  training/train, export    build/image_classifier.py    image_classifier
    forecaster        training/rnn.py           build/forecaster.py          forecaster

References are "module:attribute" strings, resolved only when a stage runs, so that reading
the table (the CLI's --help, a client command) imports no torch.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Family:
    name: str
    artifacts: str  # its folder under artifacts/ ("" : artifacts/ itself, as before families)
    config: str  # the training config dataclass: `maas train FAMILY --flags` come from it
    train: str  # train(config) -> checkpoint, saved at config.out
    export: str  # export(checkpoint path, onnx path) -> parity figure; writes one ONNX file
    build: str  # module with load(checkpoint), pipeline(ckpt, opts), core_data(ckpt, core, n)
    variants: tuple[str, ...]  # the core variants that make sense for it

    def paths(self, root: Path) -> tuple[Path, Path]:
        """(checkpoint, ONNX) under the artifacts folder `root`."""
        folder = root / self.artifacts
        return folder / "checkpoint.pt", folder / "model.onnx"


FAMILIES = {
    f.name: f
    for f in (
        Family(
            "image_classifier",
            artifacts="",
            config="maas.training.train:TrainConfig",
            train="maas.training.train:train",
            export="maas.training.export:export",
            build="maas.build.image_classifier",
            variants=("onnx", "ort-int8", "trt-fp32", "trt-fp16", "trt-int8"),
        ),
        Family(
            "forecaster",
            artifacts="forecaster",
            config="maas.training.rnn:ForecasterConfig",
            train="maas.training.rnn:train_forecaster",
            export="maas.training.rnn:export_forecaster",
            build="maas.build.forecaster",
            # INT8 would quantise only the output layer of a 40k-parameter GRU: nothing to win.
            variants=("onnx", "trt-fp32", "trt-fp16"),
        ),
    )
}


def get(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; choose one of {', '.join(FAMILIES)}")
    return FAMILIES[name]


def train(family: Family, **given):
    """Train `family` with the given options that its config has (None: its default)."""
    config = resolve(family.config)
    names = {f.name for f in dataclasses.fields(config)}
    options = {k: v for k, v in given.items() if k in names and v is not None}
    return resolve(family.train)(config(**options))


def resolve(reference: str):
    """'package.module:attribute' -> the attribute; 'package.module' -> the module."""
    module, _, attribute = reference.partition(":")
    loaded = importlib.import_module(module)
    return getattr(loaded, attribute) if attribute else loaded
