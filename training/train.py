"""Train the CNN (Adam, one-cycle schedule, augmentation) and keep the best checkpoint.

    maas train                                  # built-in digits, ~20 s on 2 cores
    maas train --data-dir ~/data --epochs 50    # CIFAR-10: cifar-10-batches-py/ or the .tar.gz

The checkpoint (artifacts/checkpoint.pt) holds the weights, the resolved config, the model
arguments, class names and normalisation constants: export and build need nothing else.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from maas.files import atomic_write
from maas.runtime.images import normalize
from maas.training.augment import Augmentation
from maas.training.checkpoint import Checkpoint
from maas.training.data import Dataset, load_dataset
from maas.training.model import SmallCNN


@dataclass
class TrainConfig:
    data_dir: str | None = None  # CIFAR-10 location; None: scikit-learn's digits
    out: str = "artifacts/checkpoint.pt"
    epochs: int = 30  # digits converge in ~20; CIFAR-10 wants 50+
    batch_size: int = 64
    lr: float = 3e-3  # peak of the one-cycle schedule; Adam is stable here at this size
    weight_decay: float = 1e-4
    width: int = 32  # first conv's channels, as in the Keras example
    shift: float = 0.1
    rotation_deg: float = 10.0
    seed: int = 0
    # torch intra-op threads. Fixed rather than "all cores": float sums are split across threads,
    # so another thread count gives other weights (measured). With the seed, the thread count
    # and the CPU's vector ISA (recorded in the checkpoint) a run repeats bit for bit.
    threads: int = 2  # 0: torch's default (the machine's cores)
    plot: bool = True  # training curves PNG beside the checkpoint


def predict_logits(
    model: torch.nn.Module, images: np.ndarray, mean, std, batch_size: int = 512
) -> np.ndarray:
    """uint8 NHWC images -> logits, normalised exactly as the served preprocessing does."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(images), batch_size):
            x = torch.from_numpy(normalize(images[i : i + batch_size], mean, std))
            out.append(model(x).numpy())
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def accuracy(logits: np.ndarray, labels: np.ndarray) -> float:
    return float((logits.argmax(1) == labels).mean()) if len(labels) else 0.0


@contextlib.contextmanager
def torch_threads(threads: int):
    """torch's intra-op threads set to `threads` (0: leave them) for every family's training,
    and given back after: the caller's process keeps its own setting."""
    previous = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(cfg: TrainConfig, dataset: Dataset | None = None) -> Checkpoint:
    with torch_threads(cfg.threads):
        return _train(cfg, dataset)


def _train(cfg: TrainConfig, dataset: Dataset | None) -> Checkpoint:
    torch.manual_seed(cfg.seed)
    torch.use_deterministic_algorithms(True)
    ds = dataset or load_dataset(cfg.data_dir, seed=cfg.seed)
    height, width = ds.image_size
    if height != width:
        raise ValueError(f"square images expected, got {height}x{width}")
    mean, std = ds.channel_stats()
    model_args = {"num_classes": len(ds.class_names), "width": cfg.width, "input_size": height}
    model = SmallCNN(**model_args)
    augment = Augmentation(cfg.shift, cfg.rotation_deg, hflip=ds.hflip_keeps_label)
    gen = torch.Generator().manual_seed(cfg.seed)

    x_train = torch.from_numpy(ds.train_x).permute(0, 3, 1, 2).float().div_(255.0)
    y_train = torch.from_numpy(ds.train_y)
    mean_t = torch.tensor(mean).view(1, 3, 1, 1)
    std_t = torch.tensor(std).view(1, 3, 1, 1)
    steps = (len(x_train) + cfg.batch_size - 1) // cfg.batch_size
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.lr, total_steps=cfg.epochs * steps)

    best: Checkpoint | None = None
    history: list[dict[str, float]] = []
    started = time.perf_counter()
    bar = tqdm(range(1, cfg.epochs + 1), desc=f"train {ds.name}", unit="epoch")
    for epoch in bar:
        model.train()
        order = torch.randperm(len(x_train), generator=gen)
        loss_sum, correct = 0.0, 0
        for i in range(steps):
            idx = order[i * cfg.batch_size : (i + 1) * cfg.batch_size]
            x = (augment(x_train[idx], gen) - mean_t) / std_t
            logits = model(x)
            loss = F.cross_entropy(logits, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += int((logits.argmax(1) == y_train[idx]).sum())
        val_acc = accuracy(predict_logits(model, ds.val_x, mean, std), ds.val_y)
        row = {
            "epoch": epoch,
            "loss": loss_sum / len(x_train),
            "train_acc": correct / len(x_train),
            "val_acc": val_acc,
        }
        history.append(row)
        bar.set_postfix(
            loss=f"{row['loss']:.3f}", acc=f"{row['train_acc']:.3f}", val=f"{val_acc:.3f}"
        )
        if best is None or val_acc > best.val_accuracy:
            best = Checkpoint(
                model_state={k: v.detach().clone() for k, v in model.state_dict().items()},
                model_args=model_args,
                class_names=list(ds.class_names),
                mean=list(mean),
                std=list(std),
                input_size=[height, width],
                dataset={"name": ds.name, "data_dir": cfg.data_dir, "seed": cfg.seed},
                config=asdict(cfg),
                epoch=epoch,
                val_accuracy=val_acc,
            )
            best.save(cfg.out)  # a crash mid-run still leaves the best model so far
    assert best is not None, "epochs must be at least 1"
    best.history = history
    best.test_accuracy = accuracy(
        predict_logits(best.build_model(), ds.test_x, mean, std), ds.test_y
    )
    best.config["train_seconds"] = round(time.perf_counter() - started, 1)
    # What else decides the exact weights besides the seed: see TrainConfig.threads.
    best.config["torch_threads"] = torch.get_num_threads()
    best.config["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
    best.save(cfg.out)
    if cfg.plot:
        plot_history(history, Path(cfg.out).with_name("training_curves.png"))
    print(
        f"best epoch {best.epoch}: val accuracy {best.val_accuracy:.4f}, "
        f"test accuracy {best.test_accuracy:.4f} ({len(ds.test_y)} held-out images), "
        f"{best.config['train_seconds']} s -> {cfg.out}"
    )
    return best


def plot_history(history: list[dict[str, float]], path: Path) -> None:
    plot_curves(history, path, [("loss", "training loss"), (("train_acc", "val_acc"), "accuracy")])


def plot_curves(history: list[dict[str, float]], path: Path, panels) -> None:
    """One panel per (key or keys of each history row, title), against the epoch; a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [h["epoch"] for h in history]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4))
    for ax, (keys, title) in zip(axes, panels, strict=True):
        for key in (keys,) if isinstance(keys, str) else keys:
            ax.plot(epochs, [h[key] for h in history], label=key)
        ax.set(xlabel="epoch", title=title)
        if not isinstance(keys, str):
            ax.legend()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=100))
    plt.close(fig)
