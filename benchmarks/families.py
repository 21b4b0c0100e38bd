"""Each family served against the same work in-process, side by side in one run.

    python -m maas.benchmarks.families                 # the built repository, artifacts/
    python -m maas.benchmarks.families --families gan vae --concurrency 1 16 64 --window 1.0

Served: our load generator (benchmarks/load.py) over gRPC, closed loop at each concurrency, on
a server this script starts on free ports; one request is one held-out image (classifier,
VAE reconstruction), one series (forecaster) or one drawn digit (GAN, COUNT 1). In-process:
the same request's work with no server (the package's pure functions and ONNX Runtime at one
thread), one request at a time (what a single caller gets) and 64 at once (the batched
ceiling of one core). The forecaster's stream: 64 sequences at once, one observation per
request (observations/s, against the forecaster's in-process single-window figure, which is
the work each observation costs). The image classifier's fuller comparison is benchmarks/compare.py
(`make bench`). Writes benchmarks/results/families.{csv,png,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from maas.benchmarks.load import Target, run_load
from maas.benchmarks.measured import Result
from maas.runtime import names as C
from maas.serve import ServerConfig, TritonServer

Request = dict[str, np.ndarray]


@dataclass(frozen=True)
class Case:
    family: str
    pipeline: str  # what the load generator calls
    requests: list[Request]  # one request each, as a client sends it
    work: Callable[[list[Request]], object]  # the same requests' work in-process, at once


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _heldout_png(count: int = 270) -> list[Request]:
    from maas.runtime.png import encode_png
    from maas.training.data import load_digits

    return [{C.IMAGE: np.array([[encode_png(x)]], object)} for x in load_digits().test_x[:count]]


def classifier_case(folder: Path) -> Case:
    from maas.runtime.classify import postprocess
    from maas.runtime.images import preprocess
    from maas.training.checkpoint import Checkpoint

    ckpt = Checkpoint.load(folder / "checkpoint.pt")
    session, spec = _session(folder / "model.onnx"), ckpt.preprocessing()

    def work(requests: list[Request]):
        pixels = preprocess([bytes(r[C.IMAGE][0, 0]) for r in requests], spec)
        [logits] = session.run([C.LOGITS], {C.PIXELS: pixels})
        return postprocess(logits, 3, ckpt.class_names)

    return Case("image_classifier", C.ENSEMBLE, _heldout_png(), work)


def forecaster_case(folder: Path) -> Case:
    """Every held-out window of the CO2 test period, one request each (HISTORY only)."""
    from maas.runtime.series import forecast, scale_window
    from maas.training.rnn import ForecasterCheckpoint, load_co2, split

    window = ForecasterCheckpoint.load(folder / "checkpoint.pt").spec()
    session = _session(folder / "model.onnx")
    test = split(load_co2(), window.length, window.horizon)["test"]

    def work(requests: list[Request]):
        rows = [scale_window(r[C.HISTORY][0], window.length) for r in requests]
        x = np.stack([r[0] for r in rows])[..., None]
        [out] = session.run([C.SCALED_FORECAST], {C.WINDOW: x})
        locs, scales = np.array([r[1] for r in rows]), np.array([r[2] for r in rows])
        return forecast(out, locs, scales, window)

    requests = [{C.HISTORY: h.astype(np.float32)[None]} for h in test.x]
    return Case("forecaster", C.FORECASTER, requests, work)


def vae_case(folder: Path) -> Case:
    """vae_reconstruct: an image through both networks, back as a PNG."""
    from maas.runtime.generate import to_png
    from maas.runtime.images import Preprocessing, preprocess

    encoder, decoder = _session(folder / "encoder.onnx"), _session(folder / "decoder.onnx")
    spec = Preprocessing(32, 32)  # what vae_preprocess does

    def work(requests: list[Request]):
        pixels = preprocess([bytes(r[C.IMAGE][0, 0]) for r in requests], spec)
        [code] = encoder.run([C.LATENT], {C.PIXELS: pixels})
        return to_png(decoder.run([C.DECODED], {C.LATENT: code})[0])

    return Case("vae", C.VAE_RECONSTRUCT, _heldout_png(), work)


def gan_case(folder: Path) -> Case:
    """generator: one image of a digit per request (COUNT 1), seeds and digits varying."""
    from maas.runtime.generate import generator_inputs, to_png
    from maas.training.gan import GANCheckpoint

    noise_size = GANCheckpoint.load(folder / "checkpoint.pt").noise
    session = _session(folder / "model.onnx")
    requests = [
        {C.DIGIT: np.array([i % 10], np.int32), C.SEED: np.array([i], np.int64),
         C.COUNT: np.array([1], np.int32)}
        for i in range(200)
    ]  # fmt: skip

    def work(batch: list[Request]):
        pairs = [
            generator_inputs(int(r[C.SEED][0]), 1, noise_size, 64, int(r[C.DIGIT][0]), 10)
            for r in batch
        ]
        feeds = {C.NOISE: np.concatenate([p[0] for p in pairs]),
                 C.CONDITION: np.concatenate([p[1] for p in pairs])}  # fmt: skip
        return to_png(session.run([C.DECODED], feeds)[0])

    return Case("gan", C.GENERATOR, requests, work)


def case_series(folder: Path) -> np.ndarray:
    """The stream's input: the CO2 test period, one window and a horizon long."""
    from maas.training.rnn import ForecasterCheckpoint, load_co2

    window = ForecasterCheckpoint.load(folder / "checkpoint.pt").spec()
    return load_co2()[-(window.length + window.horizon) :].astype(np.float32)


CASES = {
    "image_classifier": ("classifier", classifier_case),
    "forecaster": ("forecaster", forecaster_case),
    "vae": ("vae", vae_case),
    "gan": ("gan", gan_case),
}


def stream_load(url: str, series: np.ndarray, sequences: int, seconds: float) -> dict:
    """forecaster_stream with `sequences` sequences at once, each sending the series one
    observation per request (START on the first, a new sequence after the last): requests/s
    and latency percentiles over `seconds` (after one pass to warm up)."""
    import asyncio

    from maas.clients.client import AsyncClient

    async def run() -> tuple[list[float], int, float]:
        latencies: list[float] = []
        errors = 0
        stop_at = [0.0]

        async def one(client, sequence_base: int) -> None:
            nonlocal errors
            sequence = sequence_base
            while time.perf_counter() < stop_at[0]:
                for i, value in enumerate(series):
                    start = time.perf_counter()
                    try:
                        await client.observe(sequence, float(value), start=i == 0,
                                             end=i == len(series) - 1)  # fmt: skip
                        latencies.append(time.perf_counter() - start)
                    except Exception:
                        errors += 1
                sequence += sequences

        async with AsyncClient(url) as client:
            stop_at[0] = time.perf_counter() + 0.5  # warm-up pass
            await asyncio.gather(*(one(client, 1 + k) for k in range(sequences)))
            latencies.clear()
            began = time.perf_counter()
            stop_at[0] = began + seconds
            await asyncio.gather(*(one(client, 10_000 + k) for k in range(sequences)))
            return latencies, errors, time.perf_counter() - began

    latencies, errors, took = asyncio.run(run())
    ms = np.array(latencies) * 1e3
    return {"per_s": len(latencies) / took, "p50_ms": float(np.percentile(ms, 50)),
            "p99_ms": float(np.percentile(ms, 99)), "errors": errors}  # fmt: skip


def inprocess(case: Case, seconds: float) -> dict:
    """Requests/s and p50 ms of the case's work without a server, 1 and 64 requests at once."""
    out = {}
    for batch in (1, 64):
        times, i, deadline = [], 0, time.perf_counter() + seconds
        while time.perf_counter() < deadline or len(times) < 10:
            chunk = [case.requests[(i + j) % len(case.requests)] for j in range(batch)]
            start = time.perf_counter()
            case.work(chunk)
            times.append(time.perf_counter() - start)
            i += batch
        out[batch] = {"per_s": batch * len(times) / sum(times),
                      "p50_ms": statistics.median(times) * 1e3}  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> list[dict]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--families", nargs="+", choices=list(CASES), default=list(CASES))
    ap.add_argument("--classifier", type=Path, default=Path("artifacts"),
                    help="folder of its checkpoint.pt and model.onnx")  # fmt: skip
    for name in ("forecaster", "vae", "gan"):
        ap.add_argument(f"--{name}", type=Path, default=Path("artifacts") / name)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--window", type=float, default=1.0, help="seconds per measurement window")
    ap.add_argument("--max-windows", type=int, default=10,
                    help="windows a measurement may take to be stable")  # fmt: skip
    ap.add_argument("--stream-sequences", type=int, default=64,
                    help="forecaster_stream: sequences at once (0: skip)")  # fmt: skip
    ap.add_argument("--url", help="grpc://host:port of a server already serving --repository "
                    "(default: one started here, on free ports)")  # fmt: skip
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)

    cases = [CASES[f][1](getattr(args, CASES[f][0])) for f in args.families]
    baseline = {c.family: inprocess(c, seconds=2 * args.window) for c in cases}
    rows = []
    with serving(args) as url:
        for case in cases:
            for c in args.concurrency:
                target = Target(url, model=case.pipeline, payload=True, label=case.family)
                r = run_load(target, case.requests, concurrency=c, stats_url=url,
                             warmup_s=args.window, window_s=args.window,
                             max_windows=args.max_windows)  # fmt: skip
                print(f"{case.family} c={c}: {r.images_per_s:.0f} req/s, p50 {r.p50_ms:.2f} ms, "
                      f"p99 {r.p99_ms:.2f} ms, errors {r.errors}", flush=True)  # fmt: skip
                rows.append(_row(case.family, r, baseline[case.family]))
        if "forecaster" in args.families and args.stream_sequences:
            rows.append(_stream_row(args, url, baseline["forecaster"]))
    write(rows, args.out)
    return rows


@contextlib.contextmanager
def serving(args) -> Iterator[str]:
    """The gRPC URL to measure: --url's, or a server's started here and killed after (nothing
    is in flight once measured)."""
    if args.url:
        yield args.url
        return
    with TritonServer(args.repository, ServerConfig(drain=False)) as server:
        yield f"grpc://{server.grpc_url}"


def _stream_row(args, url: str, base: dict) -> dict:
    n = args.stream_sequences
    got = stream_load(url, case_series(args.forecaster), n, 4 * args.window)
    print(f"forecaster_stream, {n} sequences: {got['per_s']:.0f} observations/s, "
          f"p50 {got['p50_ms']:.2f} ms, errors {got['errors']}", flush=True)  # fmt: skip
    served = (got["per_s"], got["p50_ms"], got["p99_ms"], got["errors"])
    return _figures("forecaster_stream", n, *served, base)


def _row(family: str, r: Result, base: dict) -> dict:
    return _figures(family, r.value, r.images_per_s, r.p50_ms, r.p99_ms, r.errors, base)


def _figures(family, concurrency, per_s, p50_ms, p99_ms, errors, base: dict) -> dict:
    """One row of families.csv: served figures beside the in-process ones (`base`)."""
    return {
        "family": family,
        "concurrency": concurrency,
        "served_per_s": round(per_s, 1),
        "served_p50_ms": round(p50_ms, 3),
        "served_p99_ms": round(p99_ms, 3),
        "errors": errors,
        "inprocess_b1_per_s": round(base[1]["per_s"], 1),
        "inprocess_b1_p50_ms": round(base[1]["p50_ms"], 3),
        "inprocess_b64_per_s": round(base[64]["per_s"], 1),
        "served_vs_inprocess_b1": round(per_s / base[1]["per_s"], 3),
    }


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
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for family in sorted({r["family"] for r in rows}):
        mine = [r for r in rows if r["family"] == family]
        [line] = ax.plot([r["concurrency"] for r in mine], [r["served_per_s"] for r in mine],
                         "o-", label=f"{family}, served (gRPC)")  # fmt: skip
        if family == "forecaster_stream":
            continue  # its in-process figures are the forecaster's
        colour = line.get_color()
        ax.axhline(mine[0]["inprocess_b1_per_s"], ls="--", color=colour, lw=1,
                   label=f"{family}, in-process b1")  # fmt: skip
        ax.axhline(mine[0]["inprocess_b64_per_s"], ls=":", color=colour, lw=1,
                   label=f"{family}, in-process b64")  # fmt: skip
    ax.set(xscale="log", yscale="log", xlabel="concurrency", ylabel="requests/s",
           title="served vs the same work in-process")  # fmt: skip
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out / "families.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
