"""Build the Triton model repository from a checkpoint and its ONNX export.

    maas build                      # artifacts/{checkpoint.pt,model.onnx} -> model_repository/

Writes, for each model, config.pbtxt (generated from build/configs.py), plus the classifier's
model.onnx, the labels file and the warm-up image. The model.py adapters come from the committed
model_repository/. The whole repository is assembled in a temporary folder beside the target
and renamed into place, so a failed build leaves the old repository exactly as it was.
"""

from __future__ import annotations

import shutil
import struct
import tempfile
from pathlib import Path

import numpy as np

from maas import contract as C
from maas.build import configs
from maas.training.checkpoint import Checkpoint
from maas.transforms import Preprocessing, encode_png

# The committed model.py adapters: <repo>/model_repository/<model>/<version>/model.py
SOURCE_REPOSITORY = Path(__file__).resolve().parents[1] / "model_repository"
PYTHON_MODELS = {C.PREPROCESS: "1", C.CLASSIFIER: "1", C.POSTPROCESS: "1"}


def build_repository(
    checkpoint: str | Path,
    onnx_model: str | Path,
    target: str | Path,
    opts: configs.ServingOptions | None = None,
) -> Path:
    opts = opts or configs.ServingOptions()
    ckpt = Checkpoint.load(checkpoint)
    onnx_model = Path(onnx_model)
    if not onnx_model.is_file():
        raise FileNotFoundError(f"no ONNX model at {onnx_model}: run `maas export` first")
    target = Path(target).resolve()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.building-"))
    try:
        _assemble(staging, ckpt, onnx_model, opts)
        _swap_into_place(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    print(f"built {target} ({', '.join(sorted(p.name for p in target.iterdir()))})")
    return target


def _assemble(root: Path, ckpt: Checkpoint, onnx_model: Path, opts: configs.ServingOptions):
    pre = ckpt.preprocessing()
    pre = Preprocessing(pre.height, pre.width, pre.mean, pre.std, opts.max_pixels)
    n = len(ckpt.class_names)
    for name, version in PYTHON_MODELS.items():
        source = SOURCE_REPOSITORY / name / version / "model.py"
        if not source.is_file():
            raise FileNotFoundError(f"missing {source}: build runs from a maas source checkout")
        (root / name / version).mkdir(parents=True)
        shutil.copy2(source, root / name / version / "model.py")

    _write(root / C.PREPROCESS / "config.pbtxt", configs.preprocess_config(pre, opts))
    warmup = encode_png(np.full((pre.height, pre.width, 3), 128, np.uint8))
    # Triton reads TYPE_STRING warm-up data as 4-byte little-endian length + bytes per element.
    _write_bytes(
        root / C.PREPROCESS / "warmup" / configs.WARMUP_IMAGE_FILE,
        struct.pack("<I", len(warmup)) + warmup,
    )

    classifier = root / C.CLASSIFIER
    shutil.copy2(onnx_model, classifier / "1" / "model.onnx")
    _write(classifier / "config.pbtxt", configs.classifier_config(pre, n, opts))
    _write(
        classifier / "configs" / "onnxruntime.pbtxt",
        configs.classifier_onnxruntime_config(pre, n, opts),
    )

    _write(root / C.POSTPROCESS / "config.pbtxt", configs.postprocess_config(n, opts))
    _write_bytes(
        root / C.POSTPROCESS / "labels.txt", "".join(f"{c}\n" for c in ckpt.class_names).encode()
    )

    (root / C.ENSEMBLE / "1").mkdir(parents=True)  # an ensemble still needs a version folder
    _write(root / C.ENSEMBLE / "config.pbtxt", configs.ensemble_config(opts))


def _write(path: Path, config) -> None:
    _write_bytes(path, configs.to_pbtxt(config).encode())


def _write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def _swap_into_place(staging: Path, target: Path) -> None:
    if not target.exists():
        staging.rename(target)
        return
    old = target.with_name(f".{target.name}.old-{staging.name.rsplit('-', 1)[-1]}")
    target.rename(old)
    try:
        staging.rename(target)
    except BaseException:
        old.rename(target)
        raise
    shutil.rmtree(old, ignore_errors=True)
