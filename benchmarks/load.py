"""Our load generator, since perf_analyzer cannot be installed here. It measures the server,
not itself: its own CPU is reported, and it warns when it, not the server, is the bottleneck.

    python -m maas.benchmarks.load --url grpc://127.0.0.1:8001 --concurrency 1 4 16 64
    python -m maas.benchmarks.load --url http://127.0.0.1:8000 --rate 200 500 --batch 8

Closed loop (--concurrency: C requests always in flight) or open loop (--rate: requests/s
sent on a fixed schedule whatever the answers). After a warm-up it measures in windows until
three in a row agree within --stability (10%) on throughput, as perf_analyzer does, and reports
those three: images/s, p50/p90/p95/p99 latency, errors, and Triton's per-model queue and
compute times for the same span, and (given the server's pid) the CPU of tritonserver and of
each model's Python stubs over that span. The CSV has perf_analyzer's `-f` columns where they apply
(latencies in microseconds) plus ours. --processes spreads the load over client processes.

Targets: the ensemble over gRPC/HTTP (IMAGE bytes), `--tensors` (preprocess on the client,
PIXELS to the classifier, top-k on the client), and `naive+http://` (benchmarks/naive_server.py).

Client processes are started with multiprocessing's "spawn": a script calling run_load needs
the usual `if __name__ == "__main__":` guard.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from maas.benchmarks.measured import (
    Result,
    cpu_delta,
    cpu_seconds,
    describe,
    stats_delta,
    triton_stats,
    write_csv,
)
from maas.runtime import names as C

OPEN_LOOP_THREADS = 256  # requests in flight at most in --rate mode, per client process


@dataclass(frozen=True)
class Target:
    url: str  # grpc://host:port, http://host:port, or naive+http://host:port
    model: str = C.ENSEMBLE
    batch: int = 1  # images per request
    tensors: bool = False  # preprocess on the client and send PIXELS to `model`
    label: str = ""
    # The requests are ready-made inputs ({name: array with the batch axis}), for any pipeline
    # (the forecaster's series); `images` then holds those dicts, and `batch` must be 1.
    payload: bool = False

    @property
    def name(self) -> str:
        return self.label or f"{self.url.split('://')[0]}:{self.model}:b{self.batch}"


# ---------------------------------------------------------------- client processes


def _sender(target: Target, spec):
    """A function sending one request of encoded images (blocking), and a close function. Each
    client thread makes its own: a connection each, as perf_analyzer's workers have."""
    scheme, address = target.url.split("://", 1)
    if scheme == "naive+http":
        import http.client

        host, port = address.rsplit(":", 1)
        conn = http.client.HTTPConnection(host, int(port))

        def send_naive(key, images):
            conn.request("POST", "/classify", body=images[0])
            resp = conn.getresponse()
            body = resp.read()
            if resp.status != 200:
                raise RuntimeError(f"HTTP {resp.status}: {body[:200]!r}")

        return send_naive, conn.close
    if scheme == "grpc":
        return _grpc_sender(target, spec, address)
    import tritonclient.http as module

    from maas.clients.tensors import infer_inputs

    client = module.InferenceServerClient(address)
    built: dict[int, list] = {}  # requests repeat: serialise each input once, off the clock

    def send(key, rows):
        if key not in built:
            built[key] = infer_inputs(module, _inputs(target, rows, spec))
        if target.tensors:
            logits = client.infer(target.model, built.pop(key)).as_numpy(C.LOGITS)
            _top_k(logits, spec)
        else:
            client.infer(target.model, built[key])

    return send, client.close


def _inputs(target: Target, rows, spec) -> dict[str, np.ndarray]:
    """One request's named inputs: ready-made (payload), PIXELS preprocessed here (tensors, on
    the clock), or encoded images."""
    from maas.clients.tensors import image_request
    from maas.runtime.images import preprocess

    if target.payload:
        return rows[0]
    if target.tensors:
        return {C.PIXELS: preprocess(rows, spec["pre"])}
    return image_request(rows, None)


_CHANNELS: dict = {}


def _grpc_sender(target: Target, spec, address: str):
    """Triton's gRPC service stub with each request's protobuf built once: tritonclient's
    client rebuilds it and wraps the answer on every call, Python work that perf_analyzer
    does not do and that, on 2 shared cores, took CPU from the server (throughput on the
    empty-step floor at concurrency 16: 0.77x perf_analyzer's with it, 0.98x without)."""
    import grpc
    from tritonclient.grpc import service_pb2, service_pb2_grpc
    from tritonclient.utils import np_to_triton_dtype, serialize_byte_tensor

    if address not in _CHANNELS:  # one per client process, shared by its threads
        _CHANNELS[address] = grpc.insecure_channel(address)
    channel = _CHANNELS[address]
    stub = service_pb2_grpc.GRPCInferenceServiceStub(channel)
    built: dict[int, object] = {}

    def protobuf(inputs: dict[str, np.ndarray]):
        request = service_pb2.ModelInferRequest(model_name=target.model)
        for name, value in inputs.items():
            tensor = request.inputs.add(name=name, datatype=np_to_triton_dtype(value.dtype))
            tensor.shape.extend(value.shape)
            raw = serialize_byte_tensor(value).item() if value.dtype == object else value.tobytes()
            request.raw_input_contents.append(raw)
        return request

    def send(key, rows):
        if key not in built:
            built[key] = protobuf(_inputs(target, rows, spec))
        response = stub.ModelInfer(built.pop(key) if target.tensors else built[key])
        if target.tensors:
            shape = tuple(response.outputs[0].shape)
            _top_k(np.frombuffer(response.raw_output_contents[0], np.float32).reshape(shape), spec)

    return send, lambda: None  # the process's channel closes with it


def _top_k(logits: np.ndarray, spec) -> None:
    from maas.runtime.classify import postprocess

    postprocess(logits, 3, [str(i) for i in range(spec["classes"])])


def _worker(target, images, concurrency, rate, stop, counter, out, spec, deadline, started):
    out.put(_drive(target, images, concurrency, rate, stop, counter, spec, deadline, started))


def _drive(target, images, concurrency, rate, stop, counter, spec, deadline, started):
    """Threads with blocking clients, not asyncio: at concurrency 1 an asyncio gRPC client
    added 0.3-0.4 ms a request over perf_analyzer's on the empty-step floor, threads 0.1."""
    records: list[tuple[float, float, bool]] = []  # (end, latency s, ok); list.append is atomic
    local = threading.local()
    first = threading.Event()  # set once this process had its first answer (under counter's lock)
    senders: list = []
    cpu0, wall0 = time.process_time(), time.monotonic()

    def one(i: int, start: float | None = None):
        if not hasattr(local, "send"):
            local.send, close = _sender(target, spec)
            senders.append(close)
        key = (i * target.batch) % len(images)
        batch = [images[(key + j) % len(images)] for j in range(target.batch)]
        # Open loop: latency counts from the request's scheduled time, waits for a free
        # client thread included (no coordinated omission).
        start = start or time.monotonic()
        try:
            local.send(key, batch)
            ok = True
        except Exception:  # counted as an error, reported
            ok = False
        end = time.monotonic()
        records.append((end, end - start, ok))
        with counter.get_lock():
            counter.value += 1
            if not first.is_set():
                first.set()  # this process has imported, connected and been answered
                with started.get_lock():
                    started.value += 1

    def running() -> bool:
        # The deadline bounds the load even if the coordinator dies without setting `stop`.
        return not stop.is_set() and time.monotonic() < deadline

    def closed(w: int):
        i = w
        while running():
            one(i)
            i += concurrency

    try:
        if rate:
            interval, next_t, i = 1.0 / rate, time.monotonic(), 0
            with ThreadPoolExecutor(OPEN_LOOP_THREADS) as pool:
                while running():
                    delay = next_t - time.monotonic()
                    if delay > 0:
                        time.sleep(delay)
                    pool.submit(one, i, next_t)
                    i, next_t = i + 1, next_t + interval
        else:
            threads = [threading.Thread(target=closed, args=(w,)) for w in range(concurrency)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    finally:
        for close in senders:
            close()
    return records, time.process_time() - cpu0, time.monotonic() - wall0


# ---------------------------------------------------------------- the coordinator


def _await_clients(procs, started, deadline: float) -> None:
    """Until every client process has been answered once (spawn, imports and its connection:
    a second or so), so that the warm-up and the windows see the whole load."""
    while started.value < len(procs):
        dead = [p.exitcode for p in procs if not p.is_alive()]
        if dead:
            raise RuntimeError(f"a load client exited with code {dead[0]} before its first answer")
        if time.monotonic() > deadline:
            raise RuntimeError("the load clients had no answer before their deadline")
        time.sleep(0.01)


def run_load(
    target: Target,
    images: list[bytes],
    *,
    concurrency: int | None = None,
    rate: float | None = None,
    processes: int = 1,
    warmup_s: float = 1.0,
    window_s: float = 1.0,
    stability: float = 0.10,
    max_windows: int = 10,
    stats_url: str | None = None,
    spec: dict | None = None,
    server_pid: int | None = None,
) -> Result:
    if (concurrency is None) == (rate is None):
        raise ValueError("give exactly one of concurrency or rate")
    processes = max(1, min(processes, concurrency or processes))
    ctx = mp.get_context("spawn")  # no inherited gRPC state: a clean client per process
    stop, counter, out, started = ctx.Event(), ctx.Value("q", 0), ctx.Queue(), ctx.Value("i", 0)
    # Time.monotonic is system-wide on Linux: one deadline for every process.
    deadline = time.monotonic() + warmup_s + 0.5 * processes + (max_windows + 2) * window_s + 30
    procs = []
    for p in range(processes):
        share_c = (concurrency // processes + (p < concurrency % processes)) if concurrency else 0
        share_r = rate / processes if rate else None
        procs.append(ctx.Process(
            target=_worker,
            args=(target, images, share_c, share_r, stop, counter, out, spec, deadline, started),
            daemon=True,
        ))  # fmt: skip
    for proc in procs:
        proc.start()
    try:
        _await_clients(procs, started, deadline)
        time.sleep(warmup_s)
        marks, counts, snaps, cpus = [], [], [], []

        def mark() -> None:
            # A statistics call takes milliseconds (tens, the first); requests finish meanwhile.
            # Its midpoint is the window's edge for the client's count too, so that both count
            # the same span (within half the call at each edge).
            before = time.monotonic()
            counts.append(counter.value)
            if stats_url:
                snaps.append(triton_stats(stats_url))
            if server_pid:
                cpus.append(cpu_seconds(server_pid))
            marks.append((before + time.monotonic()) / 2)

        mark()
        rates: list[float] = []
        stable = False
        while len(rates) < max_windows:
            time.sleep(window_s)
            mark()
            rates.append((counts[-1] - counts[-2]) / (marks[-1] - marks[-2]))
            last = rates[-3:]
            if len(last) == 3 and max(last) - min(last) <= stability * statistics.mean(last):
                stable = True
                break
    finally:
        stop.set()
        # What each client that did not die measured (a dead one put nothing).
        results = [out.get(timeout=120) for p in procs if p.is_alive() or p.exitcode == 0]
        for proc in procs:
            proc.join(timeout=30)

    start, end = marks[-4] if len(marks) >= 4 else marks[0], marks[-1]
    records = [r for recs, _, _ in results for r in recs if start < r[0] <= end]
    ok = np.array([lat for _, lat, good in records if good]) * 1e3
    pct = (lambda q: float(np.percentile(ok, q))) if len(ok) else (lambda q: float("nan"))
    cpu = [c / w for _, c, w in results]
    server = stats_delta(snaps[-4] if len(snaps) >= 4 else snaps[0], snaps[-1]) if snaps else {}
    server_cpu = {}
    if cpus:  # the same span as the statistics
        server_cpu = cpu_delta(cpus[-4] if len(cpus) >= 4 else cpus[0], cpus[-1], end - start)
    return Result(
        target=target.name,
        model=target.model,
        mode="rate" if rate else "concurrency",
        value=rate or concurrency,
        images_per_request=target.batch,
        requests=len(records),
        errors=sum(1 for r in records if not r[2]),
        images_per_s=len(ok) * target.batch / (end - start),
        p50_ms=pct(50), p90_ms=pct(90), p95_ms=pct(95), p99_ms=pct(99),
        avg_ms=float(ok.mean()) if len(ok) else float("nan"),
        stable=stable,
        windows=len(rates),
        client_cpu_cores=sum(cpu),
        client_cpu_max_process=max(cpu),
        server=server,
        server_cpu=server_cpu,
    )  # fmt: skip


def load_images(checkpoint: Path) -> list[bytes]:
    from maas.runtime.png import encode_png
    from maas.workspace import heldout

    return [encode_png(x) for x in heldout(checkpoint)[0]]


def tensor_spec(checkpoint: Path) -> dict:
    from maas.training.checkpoint import Checkpoint

    ckpt = Checkpoint.load(checkpoint)
    return {"pre": ckpt.preprocessing(), "classes": len(ckpt.class_names)}


def main(argv: list[str] | None = None) -> list[Result]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="grpc://127.0.0.1:8001")
    ap.add_argument("--model", default=C.ENSEMBLE)
    ap.add_argument("--tensors", action="store_true", help="client-side preprocessing")
    ap.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    group = ap.add_mutually_exclusive_group()
    group.add_argument("--concurrency", type=int, nargs="+")
    group.add_argument("--rate", type=float, nargs="+", help="requests/s, open loop")
    ap.add_argument("--batch", type=int, default=1, help="images per request")
    ap.add_argument("--processes", type=int, default=1)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--window", type=float, default=1.0, help="seconds per measurement window")
    ap.add_argument("--stability", type=float, default=0.10)
    ap.add_argument("--max-windows", type=int, default=10)
    ap.add_argument("--stats-url", help="Triton gRPC/HTTP URL for statistics (default: --url)")
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args(argv)

    model = C.CLASSIFIER if args.tensors and args.model == C.ENSEMBLE else args.model
    target = Target(args.url, model, args.batch, args.tensors)
    images = load_images(args.checkpoint)
    spec = tensor_spec(args.checkpoint) if args.tensors else None
    stats_url = args.stats_url or (None if args.url.startswith("naive") else args.url)
    results = []
    for value in args.rate or args.concurrency or [1]:
        kind = {"rate": value} if args.rate else {"concurrency": int(value)}
        r = run_load(
            target, images, processes=args.processes, warmup_s=args.warmup,
            window_s=args.window, stability=args.stability, max_windows=args.max_windows,
            stats_url=stats_url, spec=spec, **kind,
        )  # fmt: skip
        print(describe(r), flush=True)
        results.append(r)
    if args.csv:
        write_csv(results, args.csv)
    return results


if __name__ == "__main__":
    main()
