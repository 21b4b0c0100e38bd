"""benchmarks/report.py on hand-made results: the CPU table's arithmetic and the targets."""

from __future__ import annotations

from maas.benchmarks.inprocess import Ceiling
from maas.benchmarks.measured import Result
from maas.benchmarks.report import _cpu, _targets


def result(value, images_per_s, p50=3.0, p99=30.0, server_cpu=None, client=0.2) -> Result:
    return Result(
        target="grpc", model="image_classifier", mode="concurrency", value=value,
        images_per_request=8, requests=100, errors=0, images_per_s=images_per_s,
        p50_ms=p50, p90_ms=p99, p95_ms=p99, p99_ms=p99, avg_ms=p50, stable=True, windows=3,
        client_cpu_cores=client, client_cpu_max_process=client, server_cpu=server_cpu or {},
    )  # fmt: skip


def test_cpu_table_is_core_ms_per_image_against_the_ceiling():
    best = Ceiling(processes=2, batch=64, images_per_s=8000.0)
    cpu = {"tritonserver": 0.4, "preprocess stubs": 0.9, "classifier stubs": 0.3,
           "vae_png stubs": 0.002}  # fmt: skip
    rows = [("(d) 8 images", result(16, 2000.0, server_cpu=cpu)), ("c1", result(1, 300.0))]
    lines = _cpu(rows, best, cores=2)
    assert "0.250 core-ms an image" in lines[0] and "allows 0.357" in lines[0]
    assert lines[2] == (
        "| scenario | images/s | tritonserver | preprocess stubs | classifier stubs | other stubs "
        "| client | total | cores busy |"
    )
    # 0.4 cores / 2000 images/s = 0.2 core-ms an image; all: 1.802 cores -> 0.901 core-ms;
    # an idle model's stubs (0.001 core-ms an image) go to "other stubs".
    assert lines[4] == (
        "| (d) 8 images | 2,000 | 0.200 | 0.450 | 0.150 | 0.001 | 0.100 | 0.901 | 1.80 |"
    )
    assert len(lines) == 5  # only the runs at concurrency 16 that measured the server's CPU
    assert _cpu([("c1", result(1, 300.0))], best, 2) == ["(not measured)"]


def test_targets_say_met_or_not():
    best = Ceiling(processes=2, batch=64, images_per_s=8000.0)
    rows = [
        ("(a) ensemble gRPC", result(1, 400.0, p50=1.9)),
        ("(a) ensemble gRPC", result(16, 1300.0, p99=20.0)),
        ("(c) naive FastAPI", result(16, 600.0, p99=40.0)),
        ("(d) ensemble gRPC, 8 images/request", result(16, 5000.0)),
    ]
    text = "\n".join(_targets(rows, best, 0.6))
    assert "p50 at concurrency 1 1.90 ms" in text and "target <= 2.0 ms: met" in text
    assert "2.17x the naive server's throughput" in text and "lower p99: met" in text
    assert "0.62x the in-process ceiling (target >= 0.7x: NOT met)" in text
