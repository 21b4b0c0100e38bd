"""The generative families' pure functions, their declarations and configs, without Triton."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maas import catalog
from maas.build import configs
from maas.build.gate import Verdict
from maas.build.repository import core_steps, python_steps
from maas.families import FAMILIES
from maas.runtime import names as C
from maas.runtime.generate import (
    SEED_LIMIT,
    GenerationError,
    generator_inputs,
    latents,
    mean_pairwise_distance,
    one_hot,
    psnr,
    to_png,
    to_uint8,
)
from maas.spec import Pipeline, Step, Tensor
from maas.workspace import Paths


def test_the_same_seed_gives_the_same_rows_and_more_rows_keep_the_first():
    a, b = latents(7, 4, 16), latents(7, 4, 16)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(latents(7, 9, 16)[:4], a)
    assert not np.allclose(latents(8, 4, 16), a)
    assert a.dtype == np.float32 and a.shape == (4, 16)
    assert abs(float(latents(0, 4000, 16).std()) - 1.0) < 0.02  # standard normal


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"seed": -1}, f"SEED must be in 0..{SEED_LIMIT - 1}, got -1"),
        ({"seed": 2**40}, f"got {2**40}"),
        ({"count": 0}, "COUNT must be in 1..64, got 0"),
        ({"count": 65}, "COUNT must be in 1..64, got 65"),
        ({"digit": 10}, "DIGIT must be in 0..9, got 10"),
        ({"digit": -1}, "DIGIT must be in 0..9, got -1"),
    ],
)
def test_bad_requests_are_refused_naming_the_tensor(kwargs, message):
    request = {"seed": 1, "count": 2, "digit": 3, **kwargs}
    with pytest.raises(GenerationError, match=message.replace("..", r"\.\.")):
        generator_inputs(request["seed"], request["count"], 8, 64, request["digit"], classes=10)


def test_generator_inputs_pair_noise_with_the_digit():
    noise, condition = generator_inputs(3, 5, 8, 64, digit=4, classes=10)
    np.testing.assert_array_equal(noise, latents(3, 5, 8))
    np.testing.assert_array_equal(condition, one_hot(4, 5, 10))
    assert condition.sum(1).tolist() == [1.0] * 5 and condition[:, 4].all()
    assert generator_inputs(3, 5, 8, 64)[1] is None  # the VAE's: no digit


def test_png_holds_the_quantised_image():
    images = np.random.default_rng(0).random((3, 1, 32, 32)).astype(np.float32)
    files = to_png(images)
    assert len(files) == 3
    for data, want in zip(files, to_uint8(images), strict=True):
        img = Image.open(io.BytesIO(data))
        assert img.mode == "L" and img.size == (32, 32)
        np.testing.assert_array_equal(np.asarray(img), want)
    with pytest.raises(GenerationError, match="NaN or inf"):
        to_png(np.full((1, 1, 4, 4), np.nan, np.float32))


def test_psnr_and_diversity_figures():
    a = np.zeros((2, 1, 4, 4))
    assert psnr(a, a) == float("inf")
    assert psnr(a, a + 0.1) == pytest.approx(20.0)
    assert mean_pairwise_distance(np.ones((5, 3))) == 0.0  # a collapsed generator
    assert mean_pairwise_distance(np.array([[0.0, 0.0], [3.0, 4.0]])) == pytest.approx(5.0)


def test_verdict_floor_and_problems_fail_a_variant_that_matches_pytorch():
    same = dict(variant="onnx", metric="kept", reference=0.93, value=0.93, drop=0.0, tolerance=1)
    assert Verdict(**same, floor=0.9).passed
    under = Verdict(**same, floor=0.95)
    assert not under.passed and "under the floor of 95.00%" in under.message()
    noisy = Verdict(**same, problems=("PSNR vs PyTorch 20.0 dB, under the bound of 40 dB",))
    assert not noisy.passed and "under the bound of 40 dB" in noisy.message()
    assert Verdict(**same, floor=0.9, extra={"x": 1}).record()["x"] == 1


def test_vae_declares_four_pipelines_over_two_shared_cores():
    served = catalog.vae(16, max_count=64)
    assert [p.name for p in served] == [
        C.VAE_ENCODE, C.VAE_DECODE, C.VAE_RECONSTRUCT, C.VAE_SAMPLE,
    ]  # fmt: skip
    assert [c.model for c in core_steps(served)] == [C.VAE_ENCODER, C.VAE_DECODER]
    steps = {s.model for s in python_steps(served)}
    assert steps == {C.VAE_PREPROCESS, C.VAE_PNG, C.VAE_NOISE, C.VAE_SAMPLE_PNG}
    sample = served[3]
    assert not sample.batched and sample.step(C.VAE_DECODER).batched
    # The VAE's ONNX files, one per core, in that order.
    first = Paths(Path("a")).onnx("vae")
    assert [p.name for p in FAMILIES["vae"].onnx_files(first)] == ["encoder.onnx", "decoder.onnx"]


def test_a_shared_model_declared_twice_is_refused():
    served = catalog.vae(16)
    again = catalog.vae(16)  # equal declarations, but separate Step objects
    with pytest.raises(ValueError, match="declared differently by two pipelines"):
        python_steps((served[0], again[2]))


def test_unbatched_configs_have_no_batch_axis_and_warm_up_with_batch_1():
    opts = configs.ServingOptions()
    pipeline = catalog.gan(32, max_count=opts.max_batch_size)
    assert configs.ensemble_config(pipeline, opts).max_batch_size == 0
    noise = configs.python_config(pipeline.step(C.GAN_NOISE), opts)
    assert noise.max_batch_size == 0 and not noise.HasField("dynamic_batching")
    assert [w.batch_size for w in noise.model_warmup] == [1]
    assert list(noise.output[0].dims) == [-1, 32]
    core = configs.core_config(pipeline.step(C.GAN_GENERATOR), opts, [1])
    assert core.max_batch_size == 64 and core.HasField("dynamic_batching")
    assert {i for w in core.model_warmup for i in w.inputs} == {C.NOISE, C.CONDITION}


def test_declarations_that_cannot_work_are_refused():
    t = Tensor("X", "FP32", (1,))
    with pytest.raises(ValueError, match="a core model is batched"):
        Step("m", "core", (t,), (t,), batched=False)
    step = Step("p", "python", (t,), (t,), adapter="png.py")  # batched
    with pytest.raises(ValueError, match="must be unbatched like the pipeline"):
        Pipeline("x", "f", (t,), (t,), (step,), batched=False)
