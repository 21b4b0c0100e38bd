"""`maas demo`: build what is missing, serve, classify the samples and forecast the CO2 series
over HTTP and gRPC, print the held-out accuracy measured through the server next to the
offline one, stop the server."""

from __future__ import annotations

import sys
import time

import numpy as np

from maas.pipeline import Paths, ensure_built, heldout
from maas.serve import Ports, ServerError, TritonServer
from maas.transforms import encode_png


def run_demo(paths: Paths, ports: Ports, data_dir: str | None = None) -> int:
    from maas.clients.client import Client
    from maas.training.checkpoint import Checkpoint
    from maas.training.rnn import load_co2

    ensure_built(paths, data_dir=data_dir)
    samples = sorted(p for p in paths.samples.iterdir() if p.is_file())
    try:
        server = TritonServer(paths.repository, ports).start()
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

        images, labels, _ = heldout(paths.checkpoint)
        started = time.perf_counter()
        with Client(f"grpc://{server.grpc_url}", batch_size=16) as client:
            results = client.classify([encode_png(x) for x in images], top_k=1)
        seconds = time.perf_counter() - started
        served = np.array([r.top.class_id for r in results])
        correct = int((served == labels).sum())
        offline = Checkpoint.load(paths.checkpoint).test_accuracy
        print(
            f"\nheld-out accuracy through the server: {correct / len(labels):.4f} "
            f"({correct}/{len(labels)} images, {len(labels) / seconds:.0f} images/s over gRPC); "
            f"offline at training: {offline:.4f}"
        )
    finally:
        server.stop()
    return 0
