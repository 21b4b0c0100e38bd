"""Compute is scarce: admission control and the response cache, each measured against itself
switched off, side by side in one run on one machine.

    python -m maas.benchmarks.admission                  # the built repository
    python -m maas.benchmarks.admission --seconds 3 --multiples 0.5 1 2 4

Overload: the generator (COUNT 8 per request by default: one request is real work) on a server
of its own, six ways (SERVERS): as built (its first step admits ServingOptions.max_queue_size
waiting requests), with a bounded wait at every step instead (queue_timeout_ms, WAIT_MS; what
`maas build --queue-timeout-ms` builds), with neither, and as built behind the fleet's front
door (nginx), which admits 64, 32 (its default) or 16 requests in flight and refuses the next.
Capacity is what a closed loop of 32 requests in flight gets answered per second; then requests
are offered open loop at multiples of it (sent on a fixed schedule, whatever the answers), each
run `--seconds` long, and every request's outcome and latency are kept: answered (its latency),
refused (Overloaded), or late (no answer in 10 s). The client shares the machine's cores with
the server: the rate it reached is reported beside the rate asked for.

The door's refusal alone: one client sending requests one after another while the door is held
at its bound (door_refusals), the time a refusal takes apart from a flooding client's own CPU.

Cache: the image classifier, closed loop, on a workload where half the requests repeat one of
8 images and half are images not seen before, with Triton's response cache on and off.

Writes benchmarks/results/admission.{md,png}.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from maas.access import Ports
from maas.balancer import Balancer, Nginx, has_nginx
from maas.benchmarks.loops import closed_loop, generator_requests, open_loop
from maas.build.admission import bound_wait
from maas.build.configs import ServingOptions, read_config, write_config
from maas.runtime import names as C
from maas.serve import ServerConfig, TritonServer
from maas.server_config import SERVE_CACHE_MB

RESULTS = Path(__file__).resolve().parent / "results"
GENERATOR_MODELS = (C.GENERATOR, C.GAN_NOISE, C.GAN_GENERATOR, C.GAN_PNG)
CLASSIFIER_MODELS = (C.ENSEMBLE, C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS)


def copy_models(repository: Path, models, target: Path, change=None) -> Path:
    """The models' folders copied, each config (and alternate) rewritten by change(config)."""
    for model in models:
        shutil.copytree(repository / model, target / model, ignore=shutil.ignore_patterns("__py*"))
    configs = [*target.glob("*/config.pbtxt"), *target.glob("*/configs/*.pbtxt")]
    for path in configs if change is not None else ():
        write_config(path, change(read_config(path)))
    return target


def bounded_wait(config):
    """Every step's wait bounded (maas.build.admission.bound_wait, WAIT_MS), no length bound."""
    return bound_wait(unbounded(config), ServingOptions(queue_timeout_ms=WAIT_MS))


def unbounded(config):
    if config.HasField("dynamic_batching"):  # (an ensemble has none: it is its scheduling)
        config.dynamic_batching.default_queue_policy.max_queue_size = 0
    return config


# Overload: the server as built (a length bound at each pipeline's first step), with a bounded
# wait at every step instead, with neither; and as built behind the front door (nginx, the
# fleet's), which bounds requests in flight: label -> (config change, in flight or None).
SERVERS = {
    "as built": (None, None),
    "bounded wait": (bounded_wait, None),
    "unbounded": (unbounded, None),
    **{f"front door, {n} in flight": (None, n) for n in (64, Balancer.inflight_per_replica, 16)},
}
WAIT_MS = 100


def _curve(label, url, stats_url: str, multiples: list[float], seconds: float, count: int,
           capacity: float | None = None) -> tuple[list[dict], float]:  # fmt: skip
    """This server's closed loop of 32, then open loops at `multiples` of `capacity` (the first
    server's, so that every server is offered the same rates), or of its own; requests to
    `url` (the server's, or the door's in front of it), its statistics from `stats_url`."""
    generator_inputs = generator_requests(count)
    run = asyncio.run(closed_loop(url, C.GENERATOR, generator_inputs, 32, seconds))
    own = len(run.answered) / run.seconds
    capacity = capacity or own
    rows = [run.row(capacity) | {"multiple": own / capacity, "closed": True}]
    print(f"{label}: {own:.0f} requests/s answered in a closed loop of 32; offered "
          f"multiples of {capacity:.0f}/s")  # fmt: skip
    for m in multiples:
        got = asyncio.run(open_loop(url, C.GENERATOR, generator_inputs, m * capacity, seconds))
        r = got.row(capacity) | {"closed": False, **_fail_stats(stats_url, C.GENERATOR)}
        rows.append(r)
        print(f"  {m:g}x: sent {r['sent_per_s']:.0f}/s, answered {r['answered_per_s']:.0f}/s, "
              f"p99 {r['answered_p99_ms']:.0f} ms; refused {r['refused_share']:.0%} "
              f"(p99 {r['refused_p99_ms']:.1f} ms); late {r['late']}")  # fmt: skip
    return rows, capacity


def overload(repository: Path, multiples: list[float], seconds: float, count: int) -> dict:
    """Each of SERVERS offered the same rates: multiples of the first one's capacity."""
    rows: dict[str, list[dict]] = {}
    capacity = None
    for label, (change, inflight) in SERVERS.items():
        if inflight is not None and not has_nginx():
            print(f"{label}: skipped, no nginx with its njs module here")
            continue
        with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
            repo = copy_models(repository, GENERATOR_MODELS, Path(tmp) / "repo", change)
            server = stack.enter_context(TritonServer(repo))
            url = server.grpc_url
            if inflight is not None:
                ports = Ports.free()
                lb = Balancer(http=ports.http, grpc=ports.grpc, inflight_per_replica=inflight)
                stack.enter_context(Nginx([server.ports], lb))
                url = f"{lb.host}:{lb.grpc}"
            rows[label], capacity = _curve(label, url, server.grpc_url, multiples, seconds,
                                           count, capacity)  # fmt: skip
    return rows


def door_refusals(repository: Path, n: int = 300) -> dict:
    """What a refusal at the door costs, apart from a flooding client's own CPU: the door (4 in
    flight) held at its bound by 4 long generator requests (COUNT 256), each sent again when
    answered (a place is free in between: some requests are admitted), while one client sends
    `n` requests one after another over HTTP, each on a connection of its own; the refused
    ones' latencies."""
    import http.client
    import json
    import threading

    def post(port: int, count: int) -> tuple[int, float]:
        inputs = [{"name": name, "shape": [1], "datatype": kind, "data": [value]}
                  for name, kind, value in ((C.DIGIT, "INT32", 3), (C.SEED, "INT64", 5),
                                            (C.COUNT, "INT32", count))]  # fmt: skip
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        start = time.perf_counter()
        conn.request("POST", f"/v2/models/{C.GENERATOR}/infer", json.dumps({"inputs": inputs}))
        response = conn.getresponse()
        response.read()
        conn.close()
        return response.status, time.perf_counter() - start

    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        repo = copy_models(repository, GENERATOR_MODELS, Path(tmp) / "repo")
        server = stack.enter_context(TritonServer(repo))
        ports = Ports.free()
        lb = Balancer(http=ports.http, grpc=ports.grpc, inflight_per_replica=4)
        stack.enter_context(Nginx([server.ports], lb))
        holding = threading.Event()

        def hold():
            while not holding.is_set():
                post(lb.http, 256)

        holders = [threading.Thread(target=hold) for _ in range(4)]
        for t in holders:
            t.start()
        time.sleep(1.0)
        got = [post(lb.http, 8) for _ in range(n)]
        holding.set()
        for t in holders:
            t.join()
    refused = [seconds for status, seconds in got if status == 503] or [float("nan")]
    out = {"sent": n, "refused": sum(status == 503 for status, _ in got),
           **{f"p{q}_ms": float(np.percentile(refused, q) * 1e3) for q in (50, 99)}}  # fmt: skip
    print(f"the door's refusals, one client while it is at its bound: {out['refused']} of {n}, p50 "
          f"{out['p50_ms']:.2f} ms, p99 {out['p99_ms']:.2f} ms")  # fmt: skip
    return out


def cache(repository: Path, seconds: float) -> dict[str, dict]:
    from maas.runtime.png import encode_png
    from maas.training.data import load_digits

    digits = load_digits().test_x
    repeated = [encode_png(x) for x in digits[:8]]
    fresh = [encode_png(x) for x in digits[8:]]
    out = {}
    for label, mb in (("cache", SERVE_CACHE_MB), ("no cache", 0)):

        def make(grpc, n):
            # Half repeat one of 8 images, half are new: a new image is a changed copy.
            image = repeated[n % 8] if n % 2 else fresh[n % len(fresh)] + n.to_bytes(8, "big")
            t = grpc.InferInput(C.IMAGE, [1, 1], "BYTES")
            t.set_data_from_numpy(np.array([[image]], object))
            return [t]

        with tempfile.TemporaryDirectory() as tmp:
            repo = copy_models(repository, CLASSIFIER_MODELS, Path(tmp) / "repo")
            with TritonServer(repo, ServerConfig(cache_mb=mb)) as server:
                got = asyncio.run(closed_loop(server.grpc_url, C.ENSEMBLE, make, 16, seconds))
                stats = _cache_stats(server.grpc_url, C.ENSEMBLE)
        out[label] = {"per_s": len(got.answered) / got.seconds, **stats,
                      "p50_ms": float(np.percentile(got.answered, 50) * 1e3)}  # fmt: skip
        print(f"{label}: {out[label]['per_s']:.0f} images/s, hits {stats['hits']}, "
              f"misses {stats['misses']}, hit lookup {stats['hit_us']:.0f} us")  # fmt: skip
    return out


def _fail_stats(url: str, model: str) -> dict:
    """The server's own mean time for a refused request (Triton's statistics, since start)."""
    import tritonclient.grpc as grpc

    with grpc.InferenceServerClient(url) as client:
        s = client.get_inference_statistics(model).model_stats[0].inference_stats
    return {"refused_server_us": s.fail.ns / s.fail.count / 1e3 if s.fail.count else float("nan")}


def _cache_stats(url: str, model: str) -> dict:
    import tritonclient.grpc as grpc

    with grpc.InferenceServerClient(url) as client:
        s = client.get_inference_statistics(model).model_stats[0].inference_stats
    hit_us = s.cache_hit.ns / s.cache_hit.count / 1e3 if s.cache_hit.count else float("nan")
    return {"hits": s.cache_hit.count, "misses": s.cache_miss.count, "hit_us": hit_us}


def write(rows: dict[str, list[dict]], door: dict | None, cached: dict[str, dict], out: Path,
          count: int) -> None:  # fmt: skip
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    lines = ["# Admission control and the response cache (benchmarks/admission.py)", "",
             f"## Overload: the generator (COUNT {count}), open loop at multiples of capacity", "",
             "| server | offered | sent/s | answered/s | answered p50 ms | answered p99 ms "
             "| refused | refused p99 ms | refused, server mean us | late |",
             "|---|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, table in rows.items():
        for r in table:
            offered = "closed loop, 32" if r["closed"] else f"{r['multiple']:g}x"
            lines.append(
                f"| {label} | {offered} | {r['sent_per_s']:.0f} | {r['answered_per_s']:.0f} | "
                f"{r['answered_p50_ms']:.1f} | {r['answered_p99_ms']:.1f} | "
                f"{r['refused_share']:.0%} | {r['refused_p99_ms']:.1f} | "
                f"{r.get('refused_server_us', float('nan')):.0f} | {r['late']} |"
            )
    lines += ["", "Capacity: answered/s of the first server's closed loop of 32; every server is "
              "offered the same multiples of it. Latencies are the client's, which "
              "shares the machine's cores with the server: beyond 1x its own CPU (every refusal "
              "is an exception in Python) and event-loop delays are part of the figures. As "
              "built, the bound is the length of the first step's queue (gan_noise's), so "
              "admitted requests still queue at the steps behind it; with a bounded wait, "
              f"a request that waited {WAIT_MS} ms at any step is refused there. Behind the "
              "front door, nginx refuses beyond its bound on requests in flight before the "
              "server sees the request (the server's refusal time: nan, none reached it); "
              "the client then reaches the server through nginx, on the same cores.",
              ""]  # fmt: skip
    if door:
        lines += ["## A refusal at the door, seen by a client that is not itself flooding", "",
                  "| sent | refused | p50 ms | p99 ms |", "|---|---|---|---|",
                  f"| {door['sent']} | {door['refused']} | {door['p50_ms']:.2f} | "
                  f"{door['p99_ms']:.2f} |", "",
                  "The door (4 in flight) held at its bound by 4 generator requests of 256 "
                  "images, each sent again when answered (a place is free in between: the "
                  "requests not refused were answered); one client sends requests one after "
                  "another over HTTP, each on a new connection (the time includes it).",
                  ""]  # fmt: skip
    base = cached["no cache"]["per_s"]
    lines += ["", "## Cache: the image classifier, half of the requests repeating 8 images", "",
              "| server | images/s | vs no cache | hits | misses | p50 ms | hit lookup us |",
              "|---|---|---|---|---|---|---|"]  # fmt: skip
    for label, c in cached.items():
        lines.append(f"| {label} | {c['per_s']:.0f} | {c['per_s'] / base:.2f}x | {c['hits']} | "
                     f"{c['misses']} | {c['p50_ms']:.1f} | {c['hit_us']:.0f} |")  # fmt: skip
    (out / "admission.md").write_text("\n".join(lines) + "\n")
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for label, table in rows.items():
        opened = [r for r in table if not r["closed"]]
        xs = [r["multiple"] for r in opened]
        a.plot(xs, [r["answered_per_s"] for r in opened], marker="o", label=label)
        b.plot(xs, [r["answered_p99_ms"] for r in opened], marker="o", label=label)
    a.set(xlabel="offered load (x capacity)", ylabel="answered requests/s", xscale="log")
    b.set(xlabel="offered load (x capacity)", ylabel="p99 of answered requests, ms",
          xscale="log", yscale="log")  # fmt: skip
    for ax in (a, b):
        ax.set_xticks(xs, [f"{x:g}x" for x in xs])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
        ax.legend()
    save(fig, out / "admission", "The generator beyond capacity: admission control vs an "
         "unbounded queue")  # fmt: skip


def save(fig, stem: Path, title: str) -> None:
    """The figure as stem.png beside its stem.md, titled."""
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(stem.with_suffix(".png"), dpi=110)
    print(f"wrote {stem.with_suffix('.md')} and {stem.with_suffix('.png')}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--multiples", type=float, nargs="+", default=[0.5, 1, 2, 4, 8])
    ap.add_argument("--seconds", type=float, default=5.0, help="per measured run")
    ap.add_argument("--count", type=int, default=8, help="images per generator request")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    rows = overload(args.repository, args.multiples, args.seconds, args.count)
    door = door_refusals(args.repository) if has_nginx() else None
    cached = cache(args.repository, args.seconds)
    write(rows, door, cached, args.out, args.count)


if __name__ == "__main__":
    main()
