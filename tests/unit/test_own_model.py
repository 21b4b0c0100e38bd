"""A user's own ONNX: what is read from it (layout, channels, size, logits or probabilities),
refused with one line naming what was found and the flag that changes it, before anything is
written; the served copy computes what the source model computes on the same images."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import colour_classifier
from onnx import TensorProto, helper, numpy_helper

from maas.build.configs import read_config
from maas.build.own_model import (
    ContractError,
    Reading,
    Scaling,
    build_own_onnx,
    judge_outputs,
    last_operation,
    model_input,
    read_model,
    served_copy,
)
from maas.build.repository import BuildOptions
from maas.cli import main as cli
from maas.runtime import names as C
from maas.runtime.images import layout

FAST = BuildOptions(variant="onnx", speed_seconds=0.05)
LABELS = ["a", "b", "c", "d"]


def pooled(shape: list, softmax: bool = False, channels_last: bool = False) -> onnx.ModelProto:
    """A small classifier of any input shape: channel means -> 4 scores (a softmax if asked)."""
    rng = np.random.default_rng(0)
    channels = shape[3] if channels_last else shape[1]
    nodes, x = [], "image"
    if channels_last:
        nodes.append(helper.make_node("Transpose", [x], ["nchw"], perm=[0, 3, 1, 2]))
        x = "nchw"
    nodes += [
        helper.make_node("GlobalAveragePool", [x], ["means"]),
        helper.make_node("Flatten", ["means"], ["flat"]),
        helper.make_node("Gemm", ["flat", "w", "b"], ["raw"]),
    ]
    if softmax:
        nodes.append(helper.make_node("Softmax", ["raw"], ["scores"], axis=1))
    else:
        nodes.append(helper.make_node("Identity", ["raw"], ["scores"]))
    weights = rng.normal(size=(channels if isinstance(channels, int) else 3, 4)) * 0.05
    graph = helper.make_graph(
        nodes,
        "pooled",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", 4])],
        initializer=[
            numpy_helper.from_array(weights.astype(np.float32), "w"),
            numpy_helper.from_array(np.array([0.1, -0.2, 0.3, 0.0], np.float32), "b"),
        ],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_a_channels_first_rgb_model_is_read_with_its_size(tmp_path):
    model = onnx.load(str(colour_classifier(tmp_path / "c.onnx")))
    assert read_model(model, LABELS) == Reading("image", "scores", "nchw", 3, 48, 40)


@pytest.mark.parametrize(
    ("shape", "way", "channels", "size"),
    [
        (["n", 28, 28, 1], "nhwc", 1, (28, 28)),  # Keras MNIST
        (["unk__47", 32, 32, 3], "nhwc", 3, (32, 32)),  # tf2onnx, the seed's CNN
        (["batch", 1, 20, 24], "nchw", 1, (20, 24)),  # PyTorch, grey
    ],
)
def test_the_layout_is_read_where_it_is_unambiguous(shape, way, channels, size):
    reading = read_model(pooled(shape, channels_last=way == "nhwc"), LABELS)
    assert (reading.layout, reading.channels, (reading.height, reading.width)) == (
        way, channels, size,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("shape", "flags", "message"),
    [
        (["n", 3, 32, 3], {}, r"channels first or last\? say which with --layout nchw\|nhwc"),
        (["n", 5, 32, 32], {}, r"neither \[N, C, H, W\] nor \[N, H, W, C\] with C 3 or 1"),
        ([1, 3, 32, 32], {}, r"batch axis is fixed at 1; export it with a free batch axis"),
        (["n", 3, "h", "w"], {}, r"its size is free; give the size to serve with --size H W"),
        (["n", 3, 32, 32], {"layout": "nhwc"}, r"not NHWC with 3 or 1 channels"),
        (["n", 3, 32, 32], {"size": (16, 16)}, r"--size 16 16 does not fit it"),
    ],
)
def test_what_cannot_be_read_is_refused_with_the_flag_that_helps(shape, flags, message):
    with pytest.raises(ContractError, match=f"input 'image' is FLOAT .*{message}"):
        read_model(pooled(shape), LABELS, **flags)


def test_a_flag_settles_what_the_model_leaves_open():
    assert read_model(pooled(["n", 3, 32, 3]), LABELS, layout="nhwc").channels == 3
    reading = read_model(pooled(["n", 3, "h", "w"]), LABELS, size=(24, 16))
    assert (reading.height, reading.width) == (24, 16)


def test_outputs_are_judged_on_real_rows():
    reading = Reading("x", "y", "nchw", 3, 8, 8)
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20, 4)).astype(np.float32) * 3
    probabilities = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    sigmoid = 1 / (1 + np.exp(-logits))
    assert judge_outputs(logits, reading, None) == "logits"
    assert judge_outputs(probabilities, reading, None) == "probabilities"
    assert judge_outputs(sigmoid, reading, None, "Gemm") == "logits"  # logits in 0..1 here
    assert judge_outputs(sigmoid, reading, "probabilities", "Sigmoid") == "probabilities"
    assert judge_outputs(sigmoid, reading, "logits", "Sigmoid") == "logits"
    refused = [
        (sigmoid, None, r"made by a Sigmoid: .* --outputs probabilities \(as they are\)"),
        (probabilities, "logits", r"already probabilities .* softmax twice; drop --outputs"),
        (logits, "probabilities", r"values outside 0\.\.1 .* not probabilities; drop --outputs"),
    ]
    for rows, given, message in refused:
        with pytest.raises(ContractError, match=f"output 'y' .*{message}"):
            judge_outputs(rows, reading, given, "Sigmoid")


def test_the_operation_that_makes_the_output_is_found_through_reshapes():
    model = pooled(["n", 3, 8, 8], softmax=True)
    assert last_operation(model, "scores") == "Softmax"
    assert last_operation(pooled(["n", 3, 8, 8]), "scores") == "Gemm"  # through the Identity


@pytest.mark.parametrize(
    ("shape", "channels_last", "scaling"),
    [
        (["n", 16, 12, 3], True, Scaling(255.0, (120.0, 110.0, 100.0), (60.0, 50.0, 40.0))),
        (["n", 1, 16, 12], False, Scaling(1.0, (0.5,), (0.25,))),
        (["n", 16, 12, 1], True, Scaling()),
    ],
)
def test_the_served_copy_takes_pixels_and_computes_what_the_source_does(
    shape, channels_last, scaling
):
    """The copy gets what every served network gets (RGB 0..255, NCHW); the source gets its
    own input made in numpy as its user would (grey, scaled, in its layout): same outputs."""
    source = pooled(shape, softmax=True, channels_last=channels_last)
    reading = read_model(source, LABELS)
    images = np.random.default_rng(1).integers(0, 256, (5, 16, 12, 3), dtype=np.uint8)
    copy = served_copy(source, reading, scaling)
    onnx.checker.check_model(copy, full_check=True)
    run = ort.InferenceSession(copy.SerializeToString(), providers=["CPUExecutionProvider"])
    got = run.run([C.LOGITS], {C.PIXELS: layout(images)})[0]
    original = ort.InferenceSession(source.SerializeToString(), providers=["CPUExecutionProvider"])
    want = original.run(["scores"], {"image": model_input(images, reading, scaling)})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert [i.name for i in copy.graph.input] == [C.PIXELS]
    dims = copy.graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims[1:]] == [3, 16, 12]


def test_mean_and_std_take_one_value_or_one_per_channel():
    multiplier, offset = Scaling(255.0, (0.5,), (2.0,)).per_channel(3)
    np.testing.assert_allclose(multiplier.ravel(), [0.5] * 3)
    np.testing.assert_allclose(offset.ravel(), [0.25] * 3)
    with pytest.raises(ContractError, match="--mean and --std take one value for this 1-ch"):
        Scaling(1.0, (0.1, 0.2, 0.3)).per_channel(1)


def _grey_input(tmp_path) -> Path:
    model = onnx.load(str(colour_classifier(tmp_path / "c.onnx")))
    model.graph.input[0].CopyFrom(
        helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 5, 48, 40])
    )
    onnx.save(model, str(tmp_path / "five.onnx"))
    return tmp_path / "five.onnx"


def _probabilities_as_logits(tmp_path) -> Path:
    onnx.save(pooled(["n", 3, 32, 32], softmax=True), str(tmp_path / "soft.onnx"))
    return tmp_path / "soft.onnx"


@pytest.mark.parametrize(
    ("make", "labels", "flags", "message"),
    [
        (_grey_input, 4, {},
         r"input 'image' is FLOAT \['n', 5, 48, 40\]: neither \[N, C, H, W\] nor"),
        (lambda t: colour_classifier(t / "c.onnx"), 5, {},
         r"output 'scores': expected FLOAT \[N, 5\] \(one column per label .* \['n', 4\]"),
        (lambda t: colour_classifier(t / "c.onnx", height=0), 4, {}, r"its size is free"),
        (_probabilities_as_logits, 4, {"outputs": "logits"}, r"softmax twice"),
    ],
)  # fmt: skip
def test_a_misfit_is_refused_by_name_and_nothing_is_written(tmp_path, make, labels, flags, message):
    source = make(tmp_path)
    names = tmp_path / "labels.txt"
    names.write_text("\n".join(f"class{i}" for i in range(labels)))
    target = tmp_path / "repo"
    with pytest.raises(ContractError, match=message):
        build_own_onnx(source, names, target, "mine", build=FAST, **flags)
    assert not target.exists() and sorted(p.name for p in tmp_path.iterdir() if p.is_dir()) == []


def test_built_under_its_own_name_beside_ours(repository):
    names = {p.parent.name for p in repository.glob("*/config.pbtxt")}
    assert {"colours", "colours_preprocess", "colours_model", "colours_postprocess"} <= names
    pre = read_config(repository / "colours_preprocess" / "config.pbtxt")
    assert list(pre.output[0].dims) == [3, 48, 40]
    post = read_config(repository / "colours_postprocess" / "config.pbtxt")
    assert post.parameters["outputs"].string_value == "logits"
    ensemble = read_config(repository / "colours" / "config.pbtxt")
    assert [s.model_name for s in ensemble.ensemble_scheduling.step] == [
        "colours_preprocess", "colours_model", "colours_postprocess",
    ]  # fmt: skip


def test_cli_refuses_our_names_and_a_missing_file(tmp_path, own_onnx, capsys):
    onnx_path, labels = own_onnx
    base = ["build", "image_classifier", "--repository", str(tmp_path / "repo")]
    mine = ["--onnx", str(onnx_path), "--labels", str(labels), "--name", "forecaster"]
    assert cli([*base, *mine]) == 1
    assert "--name 'forecaster'" in capsys.readouterr().err
    assert cli([*base, "--onnx", str(tmp_path / "none.onnx"), "--labels", str(labels)]) == 1
    assert "no file at" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()
