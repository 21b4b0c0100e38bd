"""Two tenants behind the front door: does a bulk flood starve an interactive client?

    python -m maas.benchmarks.tenants                    # the built repository
    python -m maas.benchmarks.tenants --seconds 5 --share 0.2

The generator (COUNT 8 a request) on one server of its own, behind nginx with two tenants
(maas.tenants; rates high enough that quotas never bite here). Capacity is what a closed loop
of 32 requests in flight gets answered per second through the front door. Then, over HTTP
(where the guard writes each tenant's priority into the request), in one run each:

- alone: the interactive tenant, open loop at `--share` of capacity;
- flooded, priorities: the same, while the bulk tenant keeps `--flood` requests in flight
  (from a process of its own);
- flooded, no priorities: the same again, both tenants in the bulk class (one Triton level);
each flooded run twice: without a bound on requests in flight at the door, then with the
fleet's (Balancer.inflight_per_replica).

Every figure is the client's, which shares the machine's cores with the server and nginx.
Writes benchmarks/results/tenants.{md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import tempfile
from pathlib import Path

import numpy as np

from maas.access import Ports
from maas.balancer import Balancer, Nginx
from maas.benchmarks.admission import GENERATOR_MODELS, RESULTS, copy_models, save
from maas.benchmarks.loops import Outcomes, closed_loop, generator_requests, open_loop
from maas.runtime import names as C
from maas.serve import TritonServer
from maas.tenants import Tenants

# label, the interactive tenant's class, the door's bound on requests in flight (a replica
# and class): first without one (where capacity is measured), then as `maas fleet` serves.
RUNS = (
    ("priorities, no door bound", "interactive", 0),
    ("no priorities, no door bound", "bulk", 0),
    ("priorities", "interactive", Balancer.inflight_per_replica),
    ("no priorities", "bulk", Balancer.inflight_per_replica),
)


def tenants(interactive_class: str) -> tuple[Tenants, dict[str, str]]:
    keys = {name: secrets.token_urlsafe(24) for name in ("app", "batch")}
    unlimited = {"rate": 100000, "burst": 100000}
    table = {"app": {"key": keys["app"], **unlimited, "class": interactive_class},
             "batch": {"key": keys["batch"], **unlimited, "class": "bulk"}}  # fmt: skip
    return Tenants.parse({"tenants": table}), keys


def _bulk(url, count, flood, seconds, headers, results) -> None:
    """The bulk tenant's closed loop, in a process of its own: sharing the interactive
    client's event loop, its answers would delay the interactive client's own."""
    make = generator_requests(count)
    results.put(asyncio.run(closed_loop(url, C.GENERATOR, make, flood, seconds, "http", headers)))


def _flooded(url, count, rate, seconds, flood, app, batch) -> tuple[Outcomes, Outcomes]:
    import multiprocessing
    import time

    results = multiprocessing.get_context("spawn").Queue()
    bulk = multiprocessing.get_context("spawn").Process(
        target=_bulk, args=(url, count, flood, seconds + 3.0, batch, results)
    )
    bulk.start()
    time.sleep(2.0)  # the bulk process starts and its queue builds up first
    make = generator_requests(count)
    mine = asyncio.run(open_loop(url, C.GENERATOR, make, rate, seconds, "http", app))
    flooded = results.get()
    bulk.join()
    return mine, flooded


def run(repository: Path, seconds: float, share: float, flood: int, count: int) -> dict:
    make = generator_requests(count)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        repo = copy_models(repository, GENERATOR_MODELS, Path(tmp) / "repo")
        with TritonServer(repo) as server:
            for label, kind, inflight in RUNS:
                table, keys = tenants(kind)
                ports = Ports.free()
                lb = Balancer(http=ports.http, grpc=ports.grpc, tenants=table,
                              inflight_per_replica=inflight)  # fmt: skip
                app = {"client-key": keys["app"]}
                batch = {"client-key": keys["batch"]}
                with Nginx([server.ports], lb):
                    url = f"127.0.0.1:{lb.http}"
                    if "capacity" not in rows:
                        got = asyncio.run(closed_loop(url, C.GENERATOR, make, 32, seconds,
                                                      "http", batch))  # fmt: skip
                        capacity = len(got.answered) / got.seconds
                        rows["capacity"] = {"per_s": capacity}
                        print(f"capacity through the front door: {capacity:.0f} requests/s")
                        alone = asyncio.run(open_loop(url, C.GENERATOR, make, share * capacity,
                                                      seconds, "http", app))  # fmt: skip
                        rows["alone"] = _row(alone, None, seconds)
                        print(f"alone: {_say(rows['alone'])}")
                    rate = share * rows["capacity"]["per_s"]
                    mine, bulk = _flooded(url, count, rate, seconds, flood, app, batch)
                    rows[f"flooded, {label}"] = _row(mine, bulk, seconds)
                    print(f"flooded, {label}: {_say(rows[f'flooded, {label}'])}")
    return rows


def _row(mine: Outcomes, bulk: Outcomes | None, seconds: float) -> dict:
    p = lambda xs, q: float(np.percentile(xs, q) * 1e3) if xs else float("nan")  # noqa: E731
    return {
        "app_per_s": len(mine.answered) / seconds,
        "app_p50_ms": p(mine.answered, 50),
        "app_p99_ms": p(mine.answered, 99),
        "app_refused": len(mine.refused),
        "app_late": mine.late,
        "app_failed": mine.failed,
        "bulk_per_s": len(bulk.answered) / bulk.seconds if bulk else 0.0,
        "bulk_refused": len(bulk.refused) if bulk else 0,
        "bulk_refused_p50_ms": p(bulk.refused, 50) if bulk else float("nan"),
        "bulk_refused_p99_ms": p(bulk.refused, 99) if bulk else float("nan"),
    }


def _say(r: dict) -> str:
    return (f"interactive {r['app_per_s']:.0f}/s p50 {r['app_p50_ms']:.0f} ms p99 "
            f"{r['app_p99_ms']:.0f} ms (refused {r['app_refused']}, late {r['app_late']}); "
            f"bulk {r['bulk_per_s']:.0f}/s (refused {r['bulk_refused']}, p99 "
            f"{r['bulk_refused_p99_ms']:.1f} ms)")  # fmt: skip


def write(rows: dict, out: Path, share: float, flood: int, count: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    alone = rows["alone"]["app_p99_ms"]
    lines = ["# Two tenants: an interactive client under a bulk flood (benchmarks/tenants.py)", "",
             f"The generator (COUNT {count}), through nginx with two tenants, over HTTP. "
             f"Capacity: {rows['capacity']['per_s']:.0f} requests/s (closed loop of 32). The "
             f"interactive tenant sends {share:.0%} of capacity, open loop; the bulk tenant "
             f"keeps {flood} requests in flight.", "",
             "| run | interactive/s | p50 ms | p99 ms | p99 vs alone | refused | late "
             "| bulk answered/s | bulk refused | bulk refused p50/p99 ms |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    labels = [label for label in rows if label != "capacity"]
    for label in labels:
        r = rows[label]
        lines.append(f"| {label} | {r['app_per_s']:.0f} | {r['app_p50_ms']:.1f} | "
                     f"{r['app_p99_ms']:.1f} | {r['app_p99_ms'] / alone:.2f}x | "
                     f"{r['app_refused']} | {r['app_late']} | {r['bulk_per_s']:.0f} | "
                     f"{r['bulk_refused']} | {r['bulk_refused_p50_ms']:.1f} / "
                     f"{r['bulk_refused_p99_ms']:.1f} |")  # fmt: skip
    lines += ["", "Target (issue 24): the interactive tenant's p99 under the flood at most 1.5x "
              "its p99 alone. Priorities: the guard writes the tenant's class into the "
              "request (parameters.priority); every batched model and every first step has "
              "two levels, and the bulk tenant's requests queue at the lower one (and are "
              "bounded there); gan_png's queue is first come, first served. The door's bound "
              f"(maas.balancer): {Balancer.inflight_per_replica} requests in flight per class, "
              "the next refused at once (the bulk tenant's refusals above, which it sends "
              "again at once). Figures are the client's, on the server's machine.",
              ""]  # fmt: skip
    (out / "tenants.md").write_text("\n".join(lines))
    (out / "tenants.json").write_text(json.dumps(rows, indent=2) + "\n")
    fig, ax = plt.subplots(figsize=(10, 4))
    xs = np.arange(len(labels))
    ax.bar(xs - 0.2, [rows[k]["app_p50_ms"] for k in labels], 0.4, label="p50")
    ax.bar(xs + 0.2, [rows[k]["app_p99_ms"] for k in labels], 0.4, label="p99")
    ax.axhline(1.5 * alone, color="gray", ls="--", lw=1, label="1.5x p99 alone")
    ax.set_xticks(xs, [label.replace(", no", ",\nno") for label in labels], fontsize=8)
    ax.set(ylabel="interactive tenant's latency, ms", yscale="log")
    ax.legend()
    ax.grid(alpha=0.3, axis="y")
    save(fig, out / "tenants", "The interactive tenant under a bulk flood, with and without "
         "priorities and the door's bound")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--seconds", type=float, default=6.0, help="per measured run")
    ap.add_argument("--share", type=float, default=0.2, help="the interactive tenant's load")
    ap.add_argument("--flood", type=int, default=64, help="the bulk tenant's requests in flight")
    ap.add_argument("--count", type=int, default=8, help="images per generator request")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = run(args.repository, args.seconds, args.share, args.flood, args.count)
    write(rows, args.out, args.share, args.flood, args.count)


if __name__ == "__main__":
    main()
