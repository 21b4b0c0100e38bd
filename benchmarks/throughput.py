"""Closed-loop load on the served ensemble: images/s and latency percentiles per concurrency.

    python -m maas.benchmarks.throughput --url grpc://127.0.0.1:8001 --concurrency 1 4 16 64

Each of C asyncio workers sends one request (of --batch images) and waits for its answer,
then sends the next, for --seconds after a warm-up. The held-out images of the checkpoint are
the payload. Prints a table and, with --csv, writes one row per concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from maas.clients.client import AsyncClient


@dataclass
class Row:
    concurrency: int
    batch: int
    requests: int
    errors: int
    images_per_s: float
    p50_ms: float
    p90_ms: float
    p99_ms: float


async def measure(
    url: str, images: list[bytes], concurrency: int, batch: int, seconds: float, warmup: float
) -> Row:
    latencies: list[float] = []
    errors = 0
    async with AsyncClient(url, batch_size=batch) as client:

        async def worker(w: int, until: float, record: bool):
            nonlocal errors
            i = w * batch
            while time.perf_counter() < until:
                payload = [images[(i + j) % len(images)] for j in range(batch)]
                i += batch * concurrency
                start = time.perf_counter()
                try:
                    await client.classify(payload, top_k=1)
                except Exception:  # counted and reported
                    errors += record
                    continue
                if record:
                    latencies.append(time.perf_counter() - start)

        now = time.perf_counter()
        await asyncio.gather(*(worker(w, now + warmup, False) for w in range(concurrency)))
        start = time.perf_counter()
        await asyncio.gather(*(worker(w, start + seconds, True) for w in range(concurrency)))
        elapsed = time.perf_counter() - start
    ms = np.array(latencies) * 1e3 if latencies else np.array([np.nan])
    return Row(
        concurrency,
        batch,
        len(latencies),
        errors,
        len(latencies) * batch / elapsed,
        *(float(np.percentile(ms, q)) for q in (50, 90, 99)),
    )


def main(argv: list[str] | None = None) -> list[Row]:
    from maas.pipeline import heldout
    from maas.transforms import encode_png

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", default="grpc://127.0.0.1:8001")
    ap.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16, 64])
    ap.add_argument("--batch", type=int, default=1, help="images per request")
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--csv", type=Path)
    args = ap.parse_args(argv)

    images = [encode_png(x) for x in heldout(args.checkpoint)[0]]
    rows = []
    header = ("conc", "batch", "img/s", "p50 ms", "p90 ms", "p99 ms", "errors")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (5, 5, 9, 8, 8, 8, 6), strict=True)))
    for c in args.concurrency:
        row = asyncio.run(measure(args.url, images, c, args.batch, args.seconds, args.warmup))
        rows.append(row)
        print(
            f"{row.concurrency:>5} {row.batch:>5} {row.images_per_s:>9.1f} {row.p50_ms:>8.2f} "
            f"{row.p90_ms:>8.2f} {row.p99_ms:>8.2f} {row.errors:>6}",
            flush=True,
        )
    if args.csv:
        args.csv.parent.mkdir(parents=True, exist_ok=True)
        with args.csv.open("w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(asdict(rows[0])))
            writer.writeheader()
            writer.writerows(asdict(r) for r in rows)
    return rows


if __name__ == "__main__":
    main()
