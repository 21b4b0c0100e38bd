"""Datasets: the built-in digits split, and the CIFAR-10 loader on files in the real format."""

from __future__ import annotations

import pickle
import tarfile

import numpy as np
import pytest

from maas.training.data import load_cifar10, load_digits


def test_digits_split_is_deterministic_disjoint_and_stratified(digits):
    assert digits.train_x.shape[1:] == (32, 32, 3) and digits.train_x.dtype == np.uint8
    sizes = len(digits.train_y), len(digits.val_y), len(digits.test_y)
    assert sum(sizes) == 1797 and sizes == (1257, 270, 270)
    again = load_digits(seed=0)
    assert np.array_equal(again.test_x, digits.test_x)
    assert not np.array_equal(load_digits(seed=1).test_y, digits.test_y)
    assert set(np.unique(digits.test_y)) == set(range(10))
    assert not digits.hflip_keeps_label
    # No held-out image is also a training image.
    train = {x.tobytes() for x in digits.train_x}
    assert not any(x.tobytes() in train for x in digits.test_x)


def _cifar_batch(rng, n, label_offset=0):
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    return {
        b"batch_label": b"x",
        b"labels": [(i + label_offset) % 10 for i in range(n)],
        b"data": data,
    }


def _write_cifar(folder, rng):
    """CIFAR-10's python layout: pickled dicts with bytes keys, 3072 = R, G, B planes of 32x32."""
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": _cifar_batch(rng, 20, i) for i in range(1, 6)}
    batches["test_batch"] = _cifar_batch(rng, 10)
    names = [
        b"airplane",
        b"automobile",
        b"bird",
        b"cat",
        b"deer",
        b"dog",
        b"frog",
        b"horse",
        b"ship",
        b"truck",
    ]
    batches["batches.meta"] = {b"label_names": names, b"num_cases_per_batch": 20}
    for name, content in batches.items():
        (folder / name).write_bytes(pickle.dumps(content, protocol=2))
    return batches


@pytest.mark.parametrize("packed", [False, True])
def test_cifar10_loader_reads_real_format(tmp_path, packed):
    rng = np.random.default_rng(0)
    batches = _write_cifar(tmp_path / "src" / "cifar-10-batches-py", rng)
    data_dir = tmp_path / "src"
    if packed:
        data_dir = tmp_path / "tarred"
        data_dir.mkdir()
        with tarfile.open(data_dir / "cifar-10-python.tar.gz", "w:gz") as tar:
            tar.add(tmp_path / "src" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    ds = load_cifar10(data_dir, val_size=10)
    assert ds.class_names[0] == "airplane" and ds.class_names[9] == "truck"
    assert (len(ds.train_y), len(ds.val_y), len(ds.test_y)) == (90, 10, 10)
    assert ds.hflip_keeps_label
    # Row 0 of data_batch_1: bytes 0..1023 are the red plane, 1024.. green, 2048.. blue.
    row = batches["data_batch_1"][b"data"][0]
    assert ds.train_x[0, 0, 0].tolist() == [row[0], row[1024], row[2048]]
    assert ds.train_x[0, 31, 31].tolist() == [row[1023], row[2047], row[3071]]
    assert ds.test_y.tolist() == batches["test_batch"][b"labels"]


def test_cifar10_missing_says_what_it_expected(tmp_path):
    with pytest.raises(FileNotFoundError, match="cifar-10-batches-py"):
        load_cifar10(tmp_path)
