"""Training: the model, augmentation, determinism, and what the checkpoint carries."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from maas.training.augment import Augmentation
from maas.training.checkpoint import Checkpoint
from maas.training.model import SmallCNN
from maas.training.train import TrainConfig, accuracy, predict_logits, train


def test_model_shapes_and_width():
    model = SmallCNN(num_classes=7, width=8)
    assert model(torch.zeros(3, 3, 32, 32)).shape == (3, 7)
    assert (
        sum(p.numel() for p in SmallCNN(width=32).parameters()) == 122_570
    )  # the Keras model's size


def test_augmentation_identity_shift_and_flip():
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(4, 3, 16, 16)
    assert torch.allclose(Augmentation(0, 0)(x, gen), x, atol=1e-5)
    shifted = Augmentation(shift=0.2, rotation_deg=0)(x, gen)
    assert shifted.shape == x.shape and not torch.allclose(shifted, x)
    # Flips only when asked: with no shift/rotation, every output is x or its mirror.
    flipped = Augmentation(0, 0, hflip=True)(x, torch.Generator().manual_seed(1))
    mirrored = [
        torch.allclose(f, xi.flip(-1), atol=1e-5) or torch.allclose(f, xi, atol=1e-5)
        for f, xi in zip(flipped, x, strict=True)
    ]
    assert all(mirrored) and not torch.allclose(flipped, x, atol=1e-5)


def test_short_training_learns_and_checkpoint_is_self_contained(checkpoint, digits):
    assert checkpoint.test_accuracy > 0.8  # 6 epochs; chance is 0.1
    assert checkpoint.class_names == [str(d) for d in range(10)]
    assert checkpoint.input_size == [32, 32]
    assert checkpoint.config["epochs"] == 6 and checkpoint.dataset["name"] == "digits"
    assert len(checkpoint.history) == 6 and checkpoint.epoch >= 1
    # The checkpoint alone rebuilds the model that reached the stored accuracy.
    model = checkpoint.build_model()
    logits = predict_logits(model, digits.test_x, checkpoint.mean, checkpoint.std)
    assert accuracy(logits, digits.test_y) == checkpoint.test_accuracy


def test_training_repeats_bit_for_bit_in_separate_processes(tmp_path):
    """Two `maas train` runs, each a fresh process as two `make serve`s would be: identical
    weights and curves, and the checkpoint records what else fixes them (threads, CPU ISA)."""
    maas = str(Path(sys.executable).with_name("maas"))
    runs = []
    for i in range(2):
        out = tmp_path / f"{i}.pt"
        subprocess.run(
            [maas, "train", "--epochs", "2", "--out", str(out), "--no-plot"],
            check=True,
            capture_output=True,
            timeout=300,
        )
        runs.append(Checkpoint.load(out))
    a, b = runs
    assert a.model_state.keys() == b.model_state.keys()
    for key, value in a.model_state.items():
        assert torch.equal(value, b.model_state[key]), key
    assert a.history == b.history and a.epoch == b.epoch
    assert a.config["torch_threads"] == TrainConfig().threads == 2
    assert a.config["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert not (tmp_path / "training_curves.png").exists()


def test_training_restores_the_callers_thread_count(tmp_path, digits):
    small = dataclasses.replace(
        digits, train_x=digits.train_x[:64], train_y=digits.train_y[:64],
        val_x=digits.val_x[:32], val_y=digits.val_y[:32],
        test_x=digits.test_x[:32], test_y=digits.test_y[:32],
    )  # fmt: skip
    before = torch.get_num_threads()
    cfg = TrainConfig(out=str(tmp_path / "c.pt"), epochs=1, plot=False, threads=1)
    assert train(cfg, dataset=small).config["torch_threads"] == 1
    assert torch.get_num_threads() == before


def test_training_curves_png_written(checkpoint_path):
    png = checkpoint_path.with_name("training_curves.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert np.prod(__import__("PIL.Image").Image.open(png).size) > 100_000
