"""The model families maas trains, builds and serves: one row each, pointing at the module of
each stage that differs per family (as transformers' task table points at pipeline classes).

    family            train / export            build (pipelines + gates)    serves
    image_classifier  training/train, export    build/image_classifier.py    image_classifier
    forecaster        training/rnn.py           build/forecaster.py          forecaster(_stream)
    vae               training/vae.py           build/vae.py                 vae_encode, _decode,
                                                                             _reconstruct, _sample
    gan               training/gan.py           build/gan.py                 generator

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
    # The build module: load(checkpoint), pipelines(ckpt, opts, onnx files) -> every pipeline
    # it serves, core_data(ckpt, core step, calibration count) -> gate data for one core model.
    build: str
    variants: tuple[str, ...]  # the core variants that make sense for it
    # The ONNX files its export writes, one per core model in order of first use; the first
    # is "the family's ONNX" (--onnx, --out), the others lie beside it.
    onnx: tuple[str, ...] = ("model.onnx",)

    def onnx_files(self, first: Path) -> tuple[Path, ...]:
        """All of its ONNX files, given where the first is."""
        return (first, *(first.parent / name for name in self.onnx[1:]))


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
        Family(
            "vae",
            artifacts="vae",
            config="maas.training.vae:VAEConfig",
            train="maas.training.vae:train_vae",
            export="maas.training.vae:export_vae",
            build="maas.build.vae",
            # Two networks of ~0.2 M parameters each: INT8 saves nothing worth a blurrier image.
            variants=("onnx", "trt-fp32", "trt-fp16"),
            onnx=("encoder.onnx", "decoder.onnx"),
        ),
        Family(
            "gan",
            artifacts="gan",
            config="maas.training.gan:GANConfig",
            train="maas.training.gan:train_gan",
            export="maas.training.gan:export_gan",
            build="maas.build.gan",
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
