"""The real TensorRT path, where a CUDA GPU and TensorRT exist (-m gpu; skipped elsewhere,
which is every CI machine of ours): trt-fp16 of the session's classifier, built and gated."""

from __future__ import annotations

import pytest

from maas.build.tensorrt import TensorRTUnavailable, load_tensorrt


def _available() -> bool:
    try:
        load_tensorrt()
    except TensorRTUnavailable:
        return False
    return True


@pytest.mark.gpu
@pytest.mark.skipif(not _available(), reason="needs TensorRT and a CUDA GPU")
@pytest.mark.parametrize("variant", ["trt-fp16", "trt-int8"])
def test_tensorrt_variant_builds_and_passes_its_gate(checkpoint_path, onnx_path, tmp_path, variant):
    import json

    from maas.build.repository import BuildOptions, build_repository

    build = BuildOptions(variant=variant, cache_dir=tmp_path / "cache", speed_seconds=0.1)
    target = build_repository(checkpoint_path, onnx_path, tmp_path / "repo", build=build)
    manifest = json.loads((target / "classifier" / "1" / "manifest.json").read_text())
    assert manifest["variant"] == variant and manifest["gate"]["drop"] <= 1.0
    assert "TF32" not in manifest["tensorrt"]["builder_flags"]
    assert list((tmp_path / "cache").glob("timing-trt*-sm*.cache"))
