"""benchmarks/variants.py on a model trained in this session: sane figures, CSV and PNG."""

from __future__ import annotations

import csv

from maas.benchmarks.variants import main


def test_variants_benchmark_short_run(checkpoint_path, onnx_path, tmp_path):
    found = main([
        "--checkpoint", str(checkpoint_path), "--onnx", str(onnx_path),
        "--variant", "onnx", "ort-int8", "--seconds", "0.05", "--rounds", "2",
        "--out", str(tmp_path),
    ])  # fmt: skip
    assert [c.variant.name for c in found] == ["onnx", "ort-int8"]
    for c in found:
        assert c.error is None and c.size_bytes > 0
        assert 0.5 < c.verdict.value <= 1 and c.speed.latency_ms_batch1 > 0
        assert all(v > 0 for v in c.speed.images_per_s.values())
    sizes = {c.variant.name: c.size_bytes for c in found}
    assert sizes["ort-int8"] < sizes["onnx"] / 2
    with (tmp_path / "variants.csv").open() as f:
        assert [r["variant"] for r in csv.DictReader(f)] == ["onnx", "ort-int8"]
    assert (tmp_path / "variants.png").read_bytes()[:4] == b"\x89PNG"
