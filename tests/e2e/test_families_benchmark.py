"""benchmarks/families.py on a short run: served figures without errors beside in-process
ones, and its CSV, table and PNG (a smoke test: the figures themselves go in benchmarks/)."""

from __future__ import annotations

import csv

from maas.benchmarks.families import main


def test_families_benchmark_short_run(repository, forecaster_path, forecaster_onnx, tmp_path):
    rows = main([
        "--repository", str(repository), "--forecaster", str(forecaster_path.parent),
        "--concurrency", "1", "4", "--window", "0.3", "--out", str(tmp_path),
    ])  # fmt: skip
    assert [r["concurrency"] for r in rows] == [1, 4]
    for r in rows:
        assert r["errors"] == 0 and r["served_per_s"] > 0 and r["served_p50_ms"] > 0
        assert r["inprocess_b64_per_s"] > r["inprocess_b1_per_s"] > 0
    with (tmp_path / "families.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 2
    assert "| forecaster | 4 |" in (tmp_path / "families.md").read_text()
    assert (tmp_path / "families.png").read_bytes()[:4] == b"\x89PNG"
