"""benchmarks/families.py on a short run against the session's server (--url): served figures
without errors beside in-process ones for every family, and its CSV, table and PNG (a smoke
test: the figures themselves go in benchmarks/)."""

from __future__ import annotations

import csv

from maas.benchmarks.families import CASES, main


def test_families_benchmark_short_run(
    repository, server, checkpoint_path, forecaster_path, vae_path, gan_path, tmp_path
):
    rows = main([
        "--repository", str(repository), "--url", f"grpc://{server.grpc_url}",
        "--classifier", str(checkpoint_path.parent),
        "--forecaster", str(forecaster_path.parent), "--vae", str(vae_path.parent),
        "--gan", str(gan_path.parent),
        "--concurrency", "2", "--window", "0.2", "--stream-sequences", "8",
        "--max-windows", "3",  # what is checked is that it runs and writes, not its figures
        "--out", str(tmp_path),
    ])  # fmt: skip
    assert [(r["family"], r["concurrency"]) for r in rows] == [
        *((family, 2) for family in CASES),
        ("forecaster_stream", 8),
    ]
    for r in rows:
        assert r["errors"] == 0 and r["served_per_s"] > 0 and r["served_p50_ms"] > 0
        assert r["inprocess_b64_per_s"] > r["inprocess_b1_per_s"] > 0
    with (tmp_path / "families.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 5
    table = (tmp_path / "families.md").read_text()
    assert "| gan | 2 |" in table and "| vae | 2 |" in table
    assert "| forecaster_stream | 8 |" in table
    assert (tmp_path / "families.png").read_bytes()[:4] == b"\x89PNG"
