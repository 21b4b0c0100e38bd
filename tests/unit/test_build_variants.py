"""maas build: variants, the accuracy gate, versions and manifests, and the TensorRT seam
(everything up to the TensorRT calls, which cannot run on these machines)."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper
from tritonclient.grpc import model_config_pb2 as mc

from maas import catalog
from maas.build import configs, image_classifier, variants
from maas.build.calibration import calibration_batches, sample
from maas.build.configs import read_config
from maas.build.gate import Verdict
from maas.build.repository import BuildOptions, build_repository
from maas.build.tensorrt import INSTALL_HINT, Profile
from maas.cli import main as cli
from maas.errors import BuildError, GateError, TensorRTUnavailable
from maas.runtime import names as C
from maas.runtime.images import layout


def tensorrt_buildable() -> bool:
    return variants.unavailable_reason(variants.VARIANTS["trt-fp16"]) is None


def test_unknown_variant_lists_the_choices():
    with pytest.raises(ValueError, match="choose auto or one of onnx, ort-int8, trt-fp32"):
        variants.resolve("fp8")


@pytest.mark.skipif(tensorrt_buildable(), reason="this machine can build TensorRT engines")
def test_auto_picks_cpu_variants_and_trt_says_what_to_install():
    assert [v.name for v in variants.resolve("auto")] == ["onnx", "ort-int8"]
    with pytest.raises(TensorRTUnavailable) as err:
        variants.resolve("trt-fp16")
    assert isinstance(err.value, BuildError)  # the CLI says a MaasError in one line
    assert "\n" not in str(err.value) and "pip install 'maas[tensorrt]'" in str(err.value)


@pytest.mark.skipif(tensorrt_buildable(), reason="this machine can build TensorRT engines")
def test_cli_trt_variant_fails_in_one_line(checkpoint_path, onnx_path, tmp_path, capsys):
    flags = ["--variant", "trt-fp16", "--checkpoint", str(checkpoint_path),
             "--onnx", str(onnx_path), "--repository", str(tmp_path / "repo")]  # fmt: skip
    assert cli(["build", "image_classifier", *flags]) == 1
    said = capsys.readouterr().err
    assert said.strip().splitlines() == [f"maas build: cannot build trt-fp16: {INSTALL_HINT}"]
    # Without a family, a variant is refused before anything is built.
    assert cli(["build", *flags]) == 1
    assert "apply to one family: name it" in capsys.readouterr().err
    assert not (tmp_path / "repo").exists()


def test_profile_shapes_and_checks():
    assert Profile(1, 16, 64).shapes((3, 32, 32)) == (
        (1, 3, 32, 32),
        (16, 3, 32, 32),
        (64, 3, 32, 32),
    )
    for bad in [(0, 1, 1), (1, 32, 16), (8, 4, 64)]:
        with pytest.raises(ValueError, match="1 <= min <= opt <= max"):
            Profile(*bad)


def test_calibration_batches_are_real_preprocessed_training_images(digits, checkpoint):
    core = catalog.image_classifier(checkpoint.preprocessing(), checkpoint.class_names).core
    data = image_classifier.core_data(checkpoint, core, calibration_count=100, dataset=digits)
    images = sample(digits.train_x, 100, seed=0)
    assert len(images) == 100 and np.array_equal(images, sample(digits.train_x, 100))
    train = {x.tobytes() for x in digits.train_x}
    assert all(x.tobytes() in train for x in images)
    np.testing.assert_array_equal(data.calibration[C.PIXELS], layout(images))
    # Every row calibrates, the last batch partial: onnxruntime.quantization takes any batch
    # size (for ort-int8 and trt-int8 alike; no TensorRT calibrator's fixed batch any more).
    batches = list(calibration_batches(data.calibration, 32))
    assert [len(b[C.PIXELS]) for b in batches] == [32, 32, 32, 4]
    np.testing.assert_array_equal(np.concatenate([b[C.PIXELS] for b in batches]), layout(images))


def test_tensorrt_plan_config_matches_profile(checkpoint):
    pre, profile = checkpoint.preprocessing(), Profile(1, 8, 32)
    opts = configs.ServingOptions(max_batch_size=32, serve_versions=2)
    engines = {"8.9": "model_sm89.plan", "9.0": "model_sm90.plan"}
    core = catalog.image_classifier(pre, checkpoint.class_names).core
    cfg = configs.core_tensorrt_config(core, opts, [3, 4], profile.max_batch, engines)
    parsed = configs.parse_pbtxt(configs.to_pbtxt(cfg))
    assert parsed.platform == "tensorrt_plan" and parsed.max_batch_size == profile.max_batch
    assert list(parsed.input[0].dims) == list(profile.shapes((3, 32, 32))[2][1:])
    assert dict(parsed.cc_model_filenames) == {"8.9": "model_sm89.plan", "9.0": "model_sm90.plan"}
    assert parsed.instance_group[0].kind == mc.ModelInstanceGroup.KIND_GPU
    assert list(parsed.version_policy.specific.versions) == [3, 4]
    # Batch 1 only: a warm-up must fit whatever max_batch_size a tool sets (Model Analyzer).
    assert {w.batch_size for w in parsed.model_warmup} == {1}


def test_verdict_boundary():
    def verdict(value):
        return Verdict("x", "top-1 accuracy", 0.90, value, (0.90 - value) * 100, 0.5)

    assert verdict(0.895).passed
    assert not verdict(0.894).passed
    assert "reference (PyTorch) 90.00%, x 89.40%, 0.60 points worse" in verdict(0.894).message()


FAST = dict(speed_seconds=0.05, calibration_images=64)


def test_versions_manifests_and_retention(tmp_path, checkpoint_path, onnx_path, checkpoint):
    repo = tmp_path / "repo"
    serve2 = configs.ServingOptions(serve_versions=2)
    build_repository(checkpoint_path, onnx_path, repo, serve2, BuildOptions("onnx", **FAST))
    build_repository(checkpoint_path, onnx_path, repo, serve2, BuildOptions("ort-int8", **FAST))
    classifier = repo / C.CLASSIFIER
    one, two = (json.loads((classifier / v / "manifest.json").read_text()) for v in "12")
    assert (one["variant"], one["precision"], two["variant"], two["precision"]) == (
        "onnx", "fp32", "ort-int8", "int8",
    )  # fmt: skip
    assert two["size_bytes"] < one["size_bytes"] / 2  # INT8 weights
    for m in (one, two):
        assert (
            m["source"]["onnx_sha256"]
            == __import__("hashlib").sha256(onnx_path.read_bytes()).hexdigest()
        )
        assert m["gate"]["heldout_images"] == 270 and m["gate"]["metric"] == "top-1 accuracy"
        assert m["gate"]["reference_pytorch"] == checkpoint.test_accuracy
        assert m["libraries"]["onnxruntime"] and "tensorrt" in m["libraries"]
        assert m["speed_in_process"]["images_per_s"]["64"] > 0 and m["host"]["built_at"]
    config = read_config(classifier / "config.pbtxt")
    assert list(config.version_policy.specific.versions) == [1, 2]

    for _ in range(2):
        build_repository(
            checkpoint_path, onnx_path, repo, None, BuildOptions("onnx", keep_versions=2, **FAST)
        )
    assert sorted(p.name for p in classifier.iterdir() if p.name.isdigit()) == ["3", "4"]
    config = read_config(classifier / "config.pbtxt")
    assert list(config.version_policy.specific.versions) == [4]


@pytest.fixture
def logged():
    """What maas logs during a test, as text: caplog's, without needing pytest's logging
    plugin (the suites may run with -p no:logging)."""
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.DEBUG)
    handler.emit = records.append
    logger = logging.getLogger("maas")
    logger.addHandler(handler)
    yield lambda: "\n".join(r.getMessage() for r in records)
    logger.removeHandler(handler)


def test_a_version_built_for_other_steps_is_not_kept_nor_rolled_back_to(
    tmp_path, checkpoint_path, onnx_path, logged
):
    """Digits, then a same-shape checkpoint with other labels: the first version's weights
    beside the second's steps would answer with the wrong labels, so the build does not keep
    it, and a rollout to it (the folder put back by hand) is refused, naming what differs."""
    from maas.errors import RolloutError
    from maas.rollout import check_version
    from maas.training.checkpoint import Checkpoint

    repo = tmp_path / "repo"
    build_repository(checkpoint_path, onnx_path, repo, None, BuildOptions("onnx", **FAST))
    first = shutil.copytree(repo / C.CLASSIFIER / "1", tmp_path / "version-1")
    check_version(repo, C.CLASSIFIER, 1)  # its own steps: fine
    relabelled = Checkpoint.load(checkpoint_path)
    relabelled.class_names = [f"digit {name}" for name in relabelled.class_names]
    relabelled.save(tmp_path / "relabelled.pt")
    build_repository(
        tmp_path / "relabelled.pt", onnx_path, repo, None, BuildOptions("onnx", **FAST)
    )
    said = logged()
    assert "classifier version 1 not kept: built for other steps (classifier differs; " in said
    assert "postprocess differs" in said
    assert sorted(p.name for p in (repo / C.CLASSIFIER).iterdir() if p.name.isdigit()) == ["2"]
    with pytest.raises(RolloutError, match="classifier has no version 1 in"):
        check_version(repo, C.CLASSIFIER, 1)
    shutil.copytree(first, repo / C.CLASSIFIER / "1")
    with pytest.raises(RolloutError, match=r"version 1 was built for other steps .*postprocess"):
        check_version(repo, C.CLASSIFIER, 1)
    check_version(repo, C.CLASSIFIER, 2)


def damaged(onnx_path: Path, out: Path) -> Path:
    """The same graph with its first convolution's weights scrambled: a broken model."""
    model = onnx.load(str(onnx_path))
    init = next(i for i in model.graph.initializer if numpy_helper.to_array(i).ndim == 4)
    weights = numpy_helper.to_array(init)
    scrambled = np.random.default_rng(0).permutation(weights.ravel()).reshape(weights.shape)
    init.CopyFrom(numpy_helper.from_array(scrambled.astype(weights.dtype), init.name))
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize("variant", ["onnx", "ort-int8", "auto"])
def test_gate_failure_leaves_repository_untouched(tmp_path, checkpoint_path, onnx_path, variant):
    repo = build_repository(
        checkpoint_path, onnx_path, tmp_path / "repo", None, BuildOptions("onnx", **FAST)
    )
    before = {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()}
    broken = damaged(onnx_path, tmp_path / "broken.onnx")
    with pytest.raises(GateError) as err:
        build_repository(checkpoint_path, broken, repo, None, BuildOptions(variant, **FAST))
    message = str(err.value)
    assert "accuracy gate failed for" in message and "reference (PyTorch)" in message
    assert "tolerance of" in message and "nothing written" in message
    assert {p: p.read_bytes() for p in repo.rglob("*") if p.is_file()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.onnx", "repo"]
