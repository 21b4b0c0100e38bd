"""Each family served against the same work in-process, side by side in one run.

    python -m maas.benchmarks.families                 # the built repository, artifacts/
    python -m maas.benchmarks.families --concurrency 1 16 64 --window 1.0

Served: our load generator (benchmarks/load.py) over gRPC, one request per series, closed loop
at each concurrency, on a server this script starts on free ports. In-process: the same
request's work with no server (maas.series scaling, ONNX Runtime at one thread, scaling back),
one request at a time (the latency and rate a single caller gets) and 64 at once (the batched
ceiling of one core). The image classifier's fuller comparison is benchmarks/compare.py
(`make bench`). Writes benchmarks/results/families.{csv,png,md}.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from maas import contract as C
from maas.benchmarks.load import Result, Target, run_load
from maas.serve import Ports, TritonServer


def forecaster_requests(length: int) -> list[dict[str, np.ndarray]]:
    """Every held-out window of the CO2 test period, one request each (HISTORY only)."""
    from maas.training.rnn import load_co2, split

    test = split(load_co2(), length, 12)["test"]
    return [{C.HISTORY: h.astype(np.float32)[None]} for h in test.x]


def forecaster_inprocess(onnx: Path, checkpoint: Path, requests, seconds: float) -> dict:
    """Requests/s and p50 ms of the forecaster's work without a server, batch 1 and 64."""
    from maas.series import forecast, scale_window
    from maas.training.rnn import ForecasterCheckpoint

    window = ForecasterCheckpoint.load(checkpoint).spec()
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])

    def work(histories):
        rows = [scale_window(h[0], window.length) for h in histories]
        x = np.stack([r[0] for r in rows])[..., None]
        [out] = session.run([C.SCALED_FORECAST], {C.WINDOW: x})
        locs, scales = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
        return forecast(out, locs, scales, window)

    histories = [r[C.HISTORY] for r in requests]
    out = {}
    for batch in (1, 64):
        times, i, deadline = [], 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 10:
            chunk = [histories[(i + j) % len(histories)] for j in range(batch)]
            start = time.perf_counter()
            work(chunk)
            times.append(time.perf_counter() - start)
            i += batch
        out[batch] = {"per_s": batch * len(times) / sum(times),
                      "p50_ms": statistics.median(times) * 1e3}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--forecaster", type=Path, default=Path("artifacts/forecaster"),
                    help="its checkpoint.pt and model.onnx")  # fmt: skip
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--window", type=float, default=1.0, help="seconds per measurement window")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)

    folder = args.forecaster
    requests = forecaster_requests(48)
    inprocess = forecaster_inprocess(
        folder / "model.onnx", folder / "checkpoint.pt", requests, seconds=2 * args.window
    )
    served: list[Result] = []
    with TritonServer(args.repository, Ports.free()) as server:
        url = f"grpc://{server.grpc_url}"
        for c in args.concurrency:
            target = Target(url, model=C.FORECASTER, payload=True, label="forecaster")
            r = run_load(target, requests, concurrency=c, stats_url=url, warmup_s=args.window,
                         window_s=args.window)  # fmt: skip
            served.append(r)
            print(f"forecaster c={c}: {r.images_per_s:.0f} req/s, p50 {r.p50_ms:.2f} ms, "
                  f"p99 {r.p99_ms:.2f} ms, errors {r.errors}", flush=True)  # fmt: skip
    rows = [
        {
            "family": "forecaster",
            "concurrency": r.value,
            "served_per_s": round(r.images_per_s, 1),
            "served_p50_ms": round(r.p50_ms, 3),
            "served_p99_ms": round(r.p99_ms, 3),
            "errors": r.errors,
            "inprocess_b1_per_s": round(inprocess[1]["per_s"], 1),
            "inprocess_b1_p50_ms": round(inprocess[1]["p50_ms"], 3),
            "inprocess_b64_per_s": round(inprocess[64]["per_s"], 1),
            "served_vs_inprocess_b1": round(r.images_per_s / inprocess[1]["per_s"], 3),
        }
        for r in served
    ]
    write(rows, args.out)
    return rows


def write(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    with (out / "families.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    lines = [
        "| family | concurrency | served req/s | p50 ms | p99 ms | in-process b1 req/s (p50 ms) "
        "| in-process b64 | served / in-process b1 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['family']} | {r['concurrency']} | {r['served_per_s']:,.0f} | "
            f"{r['served_p50_ms']:.2f} | {r['served_p99_ms']:.2f} | "
            f"{r['inprocess_b1_per_s']:,.0f} ({r['inprocess_b1_p50_ms']:.3f}) | "
            f"{r['inprocess_b64_per_s']:,.0f} | {r['served_vs_inprocess_b1']:.2f}x |"
        )
    (out / "families.md").write_text("\n".join(lines) + "\n")
    fig, ax = plt.subplots(figsize=(7, 4))
    for family in sorted({r["family"] for r in rows}):
        mine = [r for r in rows if r["family"] == family]
        ax.plot([r["concurrency"] for r in mine], [r["served_per_s"] for r in mine], "o-",
                label=f"{family}, served (gRPC)")  # fmt: skip
        ax.axhline(mine[0]["inprocess_b1_per_s"], ls="--", label=f"{family}, in-process b1")
        ax.axhline(mine[0]["inprocess_b64_per_s"], ls=":", label=f"{family}, in-process b64")
    ax.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="requests/s",
           title="served vs the same work in-process")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "families.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
