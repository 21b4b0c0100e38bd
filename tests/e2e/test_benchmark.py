"""The throughput benchmark runs against the real server and reports sane figures."""

from __future__ import annotations

import csv

from maas.benchmarks.throughput import main


def test_throughput_benchmark_short_run(server, checkpoint_path, tmp_path):
    out = tmp_path / "bench.csv"
    rows = main(
        [
            "--url",
            f"grpc://{server.grpc_url}",
            "--checkpoint",
            str(checkpoint_path),
            "--concurrency",
            "1",
            "4",
            "--seconds",
            "1",
            "--warmup",
            "0.2",
            "--csv",
            str(out),
        ]
    )
    assert [r.concurrency for r in rows] == [1, 4]
    for r in rows:
        assert r.errors == 0 and r.requests > 0 and r.images_per_s > 0
        assert 0 < r.p50_ms <= r.p90_ms <= r.p99_ms
    with out.open() as f:
        assert [int(row["concurrency"]) for row in csv.DictReader(f)] == [1, 4]
