"""The real TensorRT path, where a CUDA GPU and TensorRT exist (-m gpu; skipped elsewhere,
which is every CI machine of ours): trt-fp16 and trt-int8 (its Q/DQ graph) of the session's
classifier, built and gated, and a plan run through engine_runner against ONNX Runtime."""

from __future__ import annotations

import numpy as np
import pytest

from maas.build.tensorrt import load_tensorrt
from maas.errors import TensorRTUnavailable


def _available() -> bool:
    try:
        load_tensorrt()
    except TensorRTUnavailable:
        return False
    return True


needs_tensorrt = pytest.mark.skipif(not _available(), reason="needs TensorRT and a CUDA GPU")


@pytest.mark.gpu
@needs_tensorrt
@pytest.mark.parametrize("variant", ["trt-fp16", "trt-int8"])
def test_tensorrt_variant_builds_and_passes_its_gate(checkpoint_path, onnx_path, tmp_path, variant):
    import json

    from maas.build.repository import BuildOptions, build_repository
    from maas.build.tensorrt import builder_flags

    build = BuildOptions(variant=variant, cache_dir=tmp_path / "cache", speed_seconds=0.1)
    target = build_repository(checkpoint_path, onnx_path, tmp_path / "repo", build=build)
    manifest = json.loads((target / "classifier" / "1" / "manifest.json").read_text())
    assert manifest["variant"] == variant and manifest["gate"]["drop"] <= 1.0
    flags = manifest["tensorrt"]["builder_flags"]
    assert flags == builder_flags(manifest["precision"]) and "TF32" not in flags
    int8 = variant == "trt-int8"
    assert manifest["tensorrt"]["quantization"] == ("explicit Q/DQ" if int8 else None)
    assert list((tmp_path / "cache").glob("timing-trt*-sm*.cache"))


@pytest.mark.gpu
@needs_tensorrt
def test_a_plan_answers_as_onnx_runtime_in_chunks_of_its_max_batch(
    checkpoint, onnx_path, digits, tmp_path
):
    """build_engine(onnx, out, core, options) then engine_runner(plan, core, max_batch): 20
    rows through a profile of max 8 (three chunks, the last partial), against the ONNX."""
    from maas import catalog
    from maas.build import variants
    from maas.build.tensorrt import EngineOptions, Profile, build_engine, engine_runner
    from maas.runtime.images import layout

    core = catalog.image_classifier(checkpoint.preprocessing(), checkpoint.class_names).core
    options = EngineOptions("fp32", profile=Profile(1, 4, 8))
    plan = build_engine(onnx_path, tmp_path / "model.plan", core, options)
    rows = {core.inputs[0].name: layout(digits.test_x[:20])}
    got = engine_runner(plan, core, options.profile.max_batch)(rows)
    want = variants.runner(variants.VARIANTS["onnx"], onnx_path, core, 1, 64)(rows)
    assert set(got) == set(want)
    for name, values in want.items():
        assert got[name].shape == values.shape
        np.testing.assert_allclose(got[name], values, rtol=1e-3, atol=1e-3)  # fp32, no TF32
