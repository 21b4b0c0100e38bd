"""`maas demo`: build what is missing, serve, and over HTTP and gRPC classify the samples,
forecast the CO2 series, draw digits with the GAN (judged by the classifier, through the
server), reconstruct and sample with the VAE; save what was drawn as one PNG sheet
(artifacts/demo.png); print the held-out accuracy measured through the server next to the
offline one; stop the server."""

from __future__ import annotations

import io
import sys
import time
from pathlib import Path

import numpy as np

from maas.access import Ports
from maas.errors import ServerError
from maas.runtime.png import encode_png
from maas.serve import ServerConfig, TritonServer
from maas.workspace import Paths, ensure_built, heldout


def run_demo(paths: Paths, ports: Ports, data_dir: str | None = None) -> int:
    from maas.clients.client import Client
    from maas.training.checkpoint import Checkpoint
    from maas.training.rnn import load_co2

    ensure_built(paths, data_dir=data_dir)
    samples = sorted(p for p in paths.samples.iterdir() if p.is_file())
    try:
        server = TritonServer(paths.repository, ServerConfig(ports=ports)).start()
    except ServerError as e:
        print(f"maas demo: {e}", file=sys.stderr)
        return 1
    try:
        for url in (f"http://{server.http_url}", f"grpc://{server.grpc_url}"):
            print(f"\n== {url} ==")
            with Client(url) as client:
                for path, result in zip(samples, client.classify(samples, top_k=3), strict=True):
                    top = ", ".join(f"{p.label} {p.score:.3f}" for p in result.predictions)
                    print(f"  {path.name:<16} -> {top}")

        history = load_co2()[-60:]  # the last five years of the CO2 series
        for url in (f"http://{server.http_url}", f"grpc://{server.grpc_url}"):
            with Client(url) as client:
                answer = client.forecast(history, horizon=6)
            steps = ", ".join(f"{v:.2f}" for v in answer.values)
            print(f"\nforecaster over {url}: next 6 months of CO2 (ppm) {steps}; 90% interval "
                  f"of the first [{answer.lower[0]:.2f}, {answer.upper[0]:.2f}]")  # fmt: skip

        sheet = []
        for url in (f"http://{server.http_url}", f"grpc://{server.grpc_url}"):
            with Client(url) as client:
                drawn = [p for d in range(10) for p in client.generate(d, seed=1, count=4)]
                seen = [r.top.class_id for r in client.classify(drawn, top_k=1)]
                right = sum(s == i // 4 for i, s in enumerate(seen))
                sampled = client.sample(seed=1, count=8)
                rebuilt = client.reconstruct(samples)
                kept = [r.top.class_id for r in client.classify(rebuilt, top_k=1)]
                was = [r.top.class_id for r in client.classify(samples, top_k=1)]
            print(f"\ngan over {url}: 4 images of each digit from seed 1; the classifier "
                  f"recognises {right}/40 of them")  # fmt: skip
            print(f"vae over {url}: {len(sampled)} images sampled from seed 1; "
                  f"{sum(a == b for a, b in zip(was, kept, strict=True))}/{len(samples)} "
                  f"reconstructed samples keep their digit")  # fmt: skip
            sheet = [*(drawn[i::4] for i in range(4)), sampled, rebuilt]  # 10 digits a row
        print(f"what they drew: {save_sheet(sheet, paths.artifacts / 'demo.png')}")

        images, labels, _ = heldout(paths.checkpoint())
        started = time.perf_counter()
        with Client(f"grpc://{server.grpc_url}", batch_size=16) as client:
            results = client.classify([encode_png(x) for x in images], top_k=1)
        seconds = time.perf_counter() - started
        served = np.array([r.top.class_id for r in results])
        correct = int((served == labels).sum())
        offline = Checkpoint.load(paths.checkpoint()).test_accuracy
        print(
            f"\nheld-out accuracy through the server: {correct / len(labels):.4f} "
            f"({correct}/{len(labels)} images, {len(labels) / seconds:.0f} images/s over gRPC); "
            f"offline at training: {offline:.4f}"
        )
    finally:
        server.stop()
    return 0


def save_sheet(rows: list[list[bytes]], path: Path) -> Path:
    """PNG files as one picture, a row per list (each image 2x enlarged)."""
    from PIL import Image

    tiles = [[Image.open(io.BytesIO(p)).convert("L") for p in row] for row in rows]
    size = max(t.size[0] for row in tiles for t in row) * 2
    sheet = Image.new("L", (size * max(len(r) for r in tiles), size * len(tiles)))
    for y, row in enumerate(tiles):
        for x, tile in enumerate(row):
            sheet.paste(tile.resize((size, size)), (x * size, y * size))
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path)
    return path
