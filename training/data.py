"""Datasets as uint8 NHWC RGB arrays with a fixed train/val/test split; nothing is downloaded.

- CIFAR-10 in its standard on-disk form: `cifar-10-batches-py/` or `cifar-10-python.tar.gz`
  under --data-dir (the last 5,000 training images are the validation set).
- The default without --data-dir: scikit-learn's bundled digits (1,797 real handwritten 8x8
  digits), rendered to 32x32 RGB, split 70/15/15 stratified by a seed.
"""

from __future__ import annotations

import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

CIFAR10_DIR = "cifar-10-batches-py"
CIFAR10_TAR = "cifar-10-python.tar.gz"


@dataclass(frozen=True)
class Dataset:
    name: str
    class_names: tuple[str, ...]
    train_x: np.ndarray  # uint8 (N, H, W, 3)
    train_y: np.ndarray  # int64 (N,)
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    hflip_keeps_label: bool  # a mirrored cat is a cat; a mirrored 3 is no digit

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_x.shape[1]), int(self.train_x.shape[2])

    def channel_stats(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std of the training images on the 0..1 scale."""
        x = self.train_x.reshape(-1, 3).astype(np.float64) / 255.0
        std = np.maximum(x.std(axis=0), 1e-3)  # a constant channel must not divide by zero
        return tuple(float(v) for v in x.mean(axis=0)), tuple(float(v) for v in std)


def load_dataset(data_dir: str | Path | None = None, seed: int = 0) -> Dataset:
    """CIFAR-10 from `data_dir` when given, else the built-in digits."""
    if data_dir is None:
        return load_digits(seed=seed)
    return load_cifar10(data_dir)


def load_digits(size: int = 32, seed: int = 0) -> Dataset:
    from sklearn.datasets import load_digits as sk_digits
    from sklearn.model_selection import train_test_split

    digits = sk_digits()
    grey = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    rendered = np.stack([_render(img, size) for img in grey])
    labels = digits.target.astype(np.int64)
    idx = np.arange(len(labels))
    train_idx, rest = train_test_split(idx, test_size=0.3, stratify=labels, random_state=seed)
    val_idx, test_idx = train_test_split(
        rest, test_size=0.5, stratify=labels[rest], random_state=seed
    )
    return Dataset(
        name="digits",
        class_names=tuple(str(d) for d in range(10)),
        train_x=rendered[train_idx],
        train_y=labels[train_idx],
        val_x=rendered[val_idx],
        val_y=labels[val_idx],
        test_x=rendered[test_idx],
        test_y=labels[test_idx],
        hflip_keeps_label=False,
    )


def _render(grey8x8: np.ndarray, size: int) -> np.ndarray:
    img = Image.fromarray(grey8x8, mode="L").resize((size, size), Image.Resampling.BICUBIC)
    return np.asarray(img.convert("RGB"), dtype=np.uint8)


def load_cifar10(data_dir: str | Path, val_size: int = 5000) -> Dataset:
    """Read CIFAR-10's python pickles from a folder or straight from the tarball."""
    data_dir = Path(data_dir)
    batches = _read_cifar_files(data_dir)
    train = [batches[f"data_batch_{i}"] for i in range(1, 6) if f"data_batch_{i}" in batches]
    if not train or "test_batch" not in batches:
        raise FileNotFoundError(
            f"no CIFAR-10 data in {data_dir}: expected {CIFAR10_DIR}/ (data_batch_1..5, "
            f"test_batch, batches.meta) or {CIFAR10_TAR}"
        )
    train_x = np.concatenate([_cifar_images(b) for b in train])
    train_y = np.concatenate([_cifar_labels(b) for b in train])
    meta = batches.get("batches.meta", {})
    names = meta.get(b"label_names") or meta.get("label_names")
    class_names = tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names or [])
    if not class_names:
        class_names = tuple(str(i) for i in range(int(train_y.max()) + 1))
    val_size = min(val_size, len(train_x) // 10 or 1)
    return Dataset(
        name="cifar10",
        class_names=class_names,
        train_x=train_x[:-val_size],
        train_y=train_y[:-val_size],
        val_x=train_x[-val_size:],
        val_y=train_y[-val_size:],
        test_x=_cifar_images(batches["test_batch"]),
        test_y=_cifar_labels(batches["test_batch"]),
        hflip_keeps_label=True,
    )


def _read_cifar_files(data_dir: Path) -> dict[str, dict]:
    names = {f"data_batch_{i}" for i in range(1, 6)} | {"test_batch", "batches.meta"}
    for folder in (data_dir / CIFAR10_DIR, data_dir):
        if (folder / "test_batch").is_file():
            return {
                n: _unpickle((folder / n).read_bytes()) for n in names if (folder / n).is_file()
            }
    for tar_path in (data_dir / CIFAR10_TAR, data_dir):
        if tar_path.is_file() and tarfile.is_tarfile(tar_path):
            out = {}
            with tarfile.open(tar_path, "r:*") as tar:
                for member in tar.getmembers():
                    base = Path(member.name).name
                    if member.isfile() and base in names:
                        out[base] = _unpickle(tar.extractfile(member).read())
            return out
    return {}


def _unpickle(raw: bytes) -> dict:
    # The CIFAR-10 files are Python 2 pickles of plain dicts, lists and numpy arrays.
    return pickle.loads(raw, encoding="bytes")


def _cifar_images(batch: dict) -> np.ndarray:
    data = np.asarray(batch[b"data"], dtype=np.uint8)
    return np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _cifar_labels(batch: dict) -> np.ndarray:
    return np.asarray(batch.get(b"labels", batch.get(b"fine_labels")), dtype=np.int64)
