"""A user's own ONNX: the contract is checked before anything is written, with one error that
names the tensor and the shape expected; a fitting one is built under its own name."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import onnx
import pytest
from conftest import colour_classifier
from onnx import TensorProto, helper

from maas.build.configs import read_config
from maas.build.own_model import ContractError, build_own_onnx, check_contract
from maas.build.repository import BuildOptions

FAST = BuildOptions(variant="onnx", speed_seconds=0.05)


def test_a_fitting_onnx_gives_its_size(tmp_path):
    model = onnx.load(str(colour_classifier(tmp_path / "c.onnx")))
    assert check_contract(model, ["a", "b", "c", "d"]) == (48, 40)


def _grey_input(tmp_path) -> Path:
    model = onnx.load(str(colour_classifier(tmp_path / "c.onnx")))
    model.graph.input[0].CopyFrom(
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 1, 48, 40])
    )
    onnx.save(model, str(tmp_path / "grey.onnx"))
    return tmp_path / "grey.onnx"


@pytest.mark.parametrize(
    ("make", "labels", "message"),
    [
        (_grey_input, 4,
         r"input 'image': expected FP32 \[N, 3, H, W\] .* got FLOAT \['n', 1, 48, 40\]"),
        (lambda t: colour_classifier(t / "c.onnx"), 5,
         r"output 'scores': expected FP32 \[N, 5\] \(one column per label .* got FLOAT \['n', 4\]"),
        (lambda t: colour_classifier(t / "c.onnx", height=0), 4, r"with a fixed H and W"),
    ],
)  # fmt: skip
def test_a_misfit_is_refused_by_name_and_nothing_is_written(tmp_path, make, labels, message):
    source = make(tmp_path)
    names = tmp_path / "labels.txt"
    names.write_text("\n".join(f"class{i}" for i in range(labels)))
    target = tmp_path / "repo"
    with pytest.raises(ContractError, match=message):
        build_own_onnx(source, names, target, "mine", build=FAST)
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []


def test_built_under_its_own_name_beside_ours(repository):
    names = {p.parent.name for p in repository.glob("*/config.pbtxt")}
    assert {"colours", "colours_preprocess", "colours_model", "colours_postprocess"} <= names
    pre = read_config(repository / "colours_preprocess" / "config.pbtxt")
    assert list(pre.output[0].dims) == [3, 48, 40]
    assert pre.parameters["mean"].string_value == "0.0,0.0,0.0"
    ensemble = read_config(repository / "colours" / "config.pbtxt")
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [
        "colours_preprocess", "colours_model", "colours_postprocess",
    ]  # fmt: skip


def test_cli_refuses_our_names_and_a_missing_file(tmp_path, own_onnx):
    maas = str(Path(sys.executable).with_name("maas"))
    onnx_path, labels = own_onnx
    base = [maas, "build", "image_classifier", "--repository", str(tmp_path / "repo")]
    mine = ["--onnx", str(onnx_path), "--labels", str(labels), "--name", "forecaster"]
    run = subprocess.run([*base, *mine], capture_output=True, text=True, timeout=120)
    assert run.returncode == 1 and "--name 'forecaster'" in run.stderr
    run = subprocess.run([*base, "--onnx", str(tmp_path / "none.onnx"), "--labels", str(labels)],
                         capture_output=True, text=True, timeout=120)  # fmt: skip
    assert run.returncode == 1 and "no file at" in run.stderr
    assert not (tmp_path / "repo").exists()
