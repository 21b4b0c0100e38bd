"""(b) The ceiling: the served pipeline in-process, without a server.

decode + preprocess (maas.runtime.images) -> ONNX Runtime -> softmax/top-k, batched, with one
worker process per core (ONNX Runtime at one thread each), so it uses the whole machine as the
server does; also a single process and the batch-1 latency of one image.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import onnxruntime as ort

from maas.runtime import names as C
from maas.runtime.classify import postprocess
from maas.runtime.images import Preprocessing, preprocess


class Pipeline:
    def __init__(self, onnx: Path, spec: Preprocessing, labels: list[str], threads: int = 1):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx), options, providers=["CPUExecutionProvider"])
        self.spec, self.labels = spec, labels

    def __call__(self, images: list[bytes]):
        logits = self.session.run([C.LOGITS], {C.PIXELS: preprocess(images, self.spec)})[0]
        return postprocess(logits, 3, self.labels)


@dataclass(frozen=True)
class Ceiling:
    processes: int
    batch: int
    images_per_s: float


def _work(onnx, spec, labels, images, batch, seconds, start, out):
    pipe = Pipeline(onnx, spec, labels, threads=1)
    pipe(images[:batch])  # warm-up
    start.wait()
    done, i, t0 = 0, 0, time.monotonic()
    while time.monotonic() - t0 < seconds:
        chunk = [images[(i + j) % len(images)] for j in range(batch)]
        pipe(chunk)
        done, i = done + batch, i + batch
    out.put((done, time.monotonic() - t0))


def throughput(onnx, spec, labels, images, batch: int, processes: int, seconds: float = 3.0):
    ctx = mp.get_context("spawn")
    start, out = ctx.Barrier(processes + 1), ctx.Queue()
    procs = [
        ctx.Process(target=_work, args=(onnx, spec, labels, images, batch, seconds, start, out))
        for _ in range(processes)
    ]
    for p in procs:
        p.start()
    start.wait()
    results = [out.get(timeout=seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    return Ceiling(processes, batch, sum(n / t for n, t in results))


def latency_ms(onnx, spec, labels, images, runs: int = 500) -> float:
    """Median of single-image calls in one process, ONNX Runtime at one thread."""
    pipe = Pipeline(onnx, spec, labels)
    times = []
    for i in range(runs):
        t = time.perf_counter()
        pipe([images[i % len(images)]])
        times.append(time.perf_counter() - t)
    return statistics.median(times[10:]) * 1e3


def step_times_ms(onnx, spec, labels, images, runs: int = 300) -> dict[str, float]:
    """Median time of each step for one image, in one process: where the work itself goes."""
    from maas.runtime.images import layout, load_pixels

    pipe = Pipeline(onnx, spec, labels)
    timings: dict[str, list[float]] = {
        "decode": [],
        "layout": [],
        "onnxruntime": [],
        "top-k": [],
    }
    for i in range(runs):
        t0 = time.perf_counter()
        pixels = load_pixels(images[i % len(images)], spec)[None]
        t1 = time.perf_counter()
        x = layout(pixels)
        t2 = time.perf_counter()
        logits = pipe.session.run([C.LOGITS], {C.PIXELS: x})[0]
        t3 = time.perf_counter()
        postprocess(logits, 3, labels)
        t4 = time.perf_counter()
        for key, (a, b) in zip(timings, ((t0, t1), (t1, t2), (t2, t3), (t3, t4)), strict=True):
            timings[key].append(b - a)
    return {k: statistics.median(v[10:]) * 1e3 for k, v in timings.items()}
