"""`make soak`: a fleet under steady load for a long time, watched as an operator would.

    make soak                                        # 10 minutes, 3 replicas, 70% of capacity
    python -m maas.benchmarks.soak --minutes 2       # a shorter look

A fleet of `--replicas` (maas.fleet: tritonserver replicas behind nginx) on the built
repository, a Prometheus (Debian's package) scraping every replica, and the project's load
generator through the balancer over gRPC. First the capacity: closed loop at concurrency 16.
Then open loop at `--load` of it, one load-generator run per minute (so each minute has its
own errors and percentiles; a second or two between them while the next one starts).
Meanwhile the RSS of every tritonserver and every Python stub is read every 5 s (psutil).

Writes benchmarks/results/soak.csv (one row per minute: requests, errors, images/s, p50/p99),
soak_memory.csv (every RSS sample) and soak.png: the load generator's throughput and p99 per
minute, and from Prometheus each model's throughput, queue time per request and p99 (Triton's
latency summaries, --metrics-config summary_latencies=true), and memory per process. The
verdict: errors 0, and each process's RSS in the last minute within 10% of the first's.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

from maas.access import Ports
from maas.backends import backend_dir_default
from maas.benchmarks.load import Target, load_images, run_load
from maas.fleet import PROMETHEUS_CONFIG, Balancer, Fleet
from maas.health import stubs
from maas.prometheus import Prometheus
from maas.runtime import names as C

RESULTS = Path("benchmarks/results")
SAMPLE_S = 5.0  # RSS sampling period
GROWTH_LIMIT = 0.10  # RSS, last minute vs first
PIPELINE = (C.ENSEMBLE, C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS)  # what the load goes through


def sample_memory(fleet: Fleet, started: float, rows: list, stop: threading.Event) -> None:
    """Every SAMPLE_S: (seconds, replica, process, pid, RSS MB) for each tritonserver and stub."""
    import psutil

    while not stop.is_set():
        now = time.monotonic() - started
        for i, server in enumerate(fleet.servers):
            if server.process is None:
                continue
            procs = [("tritonserver", server.process.pid)]
            procs += [(m, pid) for m, pids in stubs(server.process.pid).items() for pid in pids]
            for name, pid in procs:
                try:
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                except psutil.Error:
                    continue  # gone meanwhile (a reload)
                rows.append((round(now, 1), i, name, pid, round(rss, 1)))
        stop.wait(SAMPLE_S)


def memory_growth(rows: list, first_s: float, last_s: float) -> dict[tuple, float]:
    """(replica, process, pid) -> mean RSS over the last minute / over the first, minus 1.
    A process that is not there in both minutes (a reloaded stub) is left out."""
    first, last = defaultdict(list), defaultdict(list)
    for t, replica, name, pid, rss in rows:
        key = (replica, name, pid)
        if t <= first_s:
            first[key].append(rss)
        elif t >= last_s:
            last[key].append(rss)
    return {
        key: statistics.mean(last[key]) / statistics.mean(first[key]) - 1
        for key in first
        if key in last
    }


def prometheus_series(prom: Prometheus, start: float, end: float) -> dict[str, dict]:
    """Per-model series over the run (step 15 s): throughput, queue ms a request, p99 ms."""
    step = 15
    models = f'model=~"{"|".join(PIPELINE)}"'  # the loaded pipeline, not the watchdog's probes
    rate = f"sum by (model) (rate({{}}{{{{{models}}}}}[1m]))"
    queries = {
        "infer/s": rate.format("nv_inference_request_success"),
        "queue ms": f"{rate.format('nv_inference_queue_duration_us')} / 1000 / "
        f"{rate.format('nv_inference_request_success')}",
        "p99 ms": f'max by (model) (nv_inference_request_summary_us{{{models},quantile="0.99"}})'
        " / 1000",
    }
    out = {}
    for name, query in queries.items():
        out[name] = {
            series["metric"].get("model", "?"): [(float(t), float(v)) for t, v in series["values"]]
            for series in prom.query_range(query, start, end, step)
        }
    return out


def plot(minutes: list[dict], memory: list, series: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 3, figsize=(17, 8.5))
    x = [m["minute"] for m in minutes]
    axes[0][0].plot(x, [m["images_per_s"] for m in minutes], marker="o")
    axes[0][0].set(title="load generator: images/s", xlabel="minute", ylim=(0, None))
    axes[0][1].plot(x, [m["p99_ms"] for m in minutes], marker="o", label="p99")
    axes[0][1].plot(x, [m["p50_ms"] for m in minutes], marker="o", label="p50")
    axes[0][1].set(title="load generator: latency (ms)", xlabel="minute", ylim=(0, None))
    axes[0][1].legend()
    t0 = min((v[0][0] for s in series.values() for v in s.values() if v), default=0.0)
    for ax, name in zip((axes[0][2], axes[1][0], axes[1][1]), series, strict=True):
        for model, values in sorted(series[name].items()):
            if values:
                ax.plot([(t - t0) / 60 for t, _ in values], [v for _, v in values], label=model)
        ax.set(title=f"Prometheus: {name} per model", xlabel="minute")
        ax.legend(fontsize=7)
    by_process = defaultdict(list)
    for t, replica, name, pid, rss in memory:
        by_process[(replica, name, pid)].append((t / 60, rss))
    for (replica, name, _), values in sorted(by_process.items()):
        if name == "tritonserver" or name in PIPELINE:  # the other stubs idle: flat lines
            axes[1][2].plot(*zip(*values, strict=True), label=f"r{replica} {name}")
    axes[1][2].set(title="RSS (MB): tritonserver, the pipeline's stubs", xlabel="minute")
    axes[1][2].legend(fontsize=6, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    ap.add_argument("--replicas", type=int, default=3)
    ap.add_argument("--minutes", type=int, default=10)
    ap.add_argument("--load", type=float, default=0.7, help="fraction of measured capacity")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)

    images = load_images(args.checkpoint)
    args.out.mkdir(parents=True, exist_ok=True)
    ports = Ports.free()
    state = Path(tempfile.mkdtemp(prefix="maas-soak-"))
    lb = Balancer(http=ports.http, grpc=ports.grpc)
    summaries = ("--metrics-config=summary_latencies=true",)
    with Fleet(args.repository, args.replicas, balancer=lb, state_dir=state,
               backend_dir=backend_dir_default(), server_args=summaries) as fleet:  # fmt: skip
        target = Target(fleet.url("grpc"), C.ENSEMBLE)
        # The scrape config the fleet writes for its operator (every replica, every 5 s).
        with Prometheus(state / PROMETHEUS_CONFIG, Ports.free().http) as prom:
            capacity = run_load(target, images, concurrency=16, window_s=2.0, max_windows=8)
            rate = args.load * capacity.images_per_s
            print(f"capacity: {capacity.images_per_s:.0f} images/s at concurrency 16 "
                  f"(p99 {capacity.p99_ms:.1f} ms); soak at {rate:.0f}/s", flush=True)  # fmt: skip
            memory: list = []
            stop = threading.Event()
            started = time.monotonic()
            start_wall = time.time()
            sampler = threading.Thread(
                target=sample_memory, args=(fleet, started, memory, stop), daemon=True
            )
            sampler.start()
            minutes = []
            try:
                for minute in range(1, args.minutes + 1):
                    r = run_load(target, images, rate=rate, warmup_s=0.5, window_s=60.0,
                                 max_windows=1)  # fmt: skip
                    minutes.append({
                        "minute": minute, "requests": r.requests, "errors": r.errors,
                        "images_per_s": round(r.images_per_s, 1), "p50_ms": round(r.p50_ms, 2),
                        "p99_ms": round(r.p99_ms, 2),
                    })  # fmt: skip
                    print(f"minute {minute}: {minutes[-1]}", flush=True)
            finally:
                stop.set()
                sampler.join()
            elapsed = time.monotonic() - started
            series = prometheus_series(prom, start_wall, time.time())

    growth = memory_growth(memory, 60.0, elapsed - 60.0)
    with open(args.out / "soak.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(minutes[0]))
        writer.writeheader()
        writer.writerows(minutes)
    with open(args.out / "soak_memory.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["seconds", "replica", "process", "pid", "rss_mb"])
        writer.writerows(memory)
    plot(minutes, memory, series, args.out / "soak.png")

    errors = sum(m["errors"] for m in minutes)
    requests = sum(m["requests"] for m in minutes)
    worst = max(growth.items(), key=lambda kv: abs(kv[1]))
    print(f"\nsoak: {args.minutes} min, {args.replicas} replicas, {rate:.0f}/s offered "
          f"({args.load:.0%} of {capacity.images_per_s:.0f}): {requests} requests, {errors} "
          f"errors; RSS last minute vs first, {len(growth)} processes: largest change "
          f"{worst[1]:+.1%} (replica {worst[0][0]} {worst[0][1]})")  # fmt: skip
    for (replica, name, pid), g in sorted(growth.items()):
        print(f"  replica {replica} {name} (pid {pid}): {g:+.1%}")
    ok = errors == 0 and all(abs(g) <= GROWTH_LIMIT for g in growth.values())
    print(f"verdict: {'PASS' if ok else 'FAIL'} (errors 0, RSS within {GROWTH_LIMIT:.0%})")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
