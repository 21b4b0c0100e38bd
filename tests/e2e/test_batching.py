"""Concurrency: 16 clients at once, all answered correctly, with dynamic batching engaged."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import tritonclient.grpc as grpcclient

from maas import contract as C
from maas.clients.client import Client


def model_stats(server, name: str) -> tuple[int, int]:
    """(inference_count, execution_count) from Triton's statistics API."""
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        stats = client.get_inference_statistics(name, as_json=True)["model_stats"][0]
    finally:
        client.close()
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


def test_sixteen_concurrent_clients_batched(server, heldout_png, offline):
    before = model_stats(server, C.CLASSIFIER)

    def worker(w: int) -> list[tuple[int, int]]:
        scheme, url = ("grpc", server.grpc_url) if w % 2 else ("http", server.http_url)
        with Client(f"{scheme}://{url}") as client:
            picks = range(w, len(heldout_png), 16)
            got = [client.classify([heldout_png[i]])[0].top.class_id for i in picks]
        return list(zip(picks, got, strict=True))

    with ThreadPoolExecutor(16) as pool:
        answers = [pair for part in pool.map(worker, range(16)) for pair in part]
    assert len(answers) == len(heldout_png)
    assert all(got == offline["ids"][i, 0] for i, got in answers)

    inferences, executions = (
        a - b for a, b in zip(model_stats(server, C.CLASSIFIER), before, strict=True)
    )
    assert inferences == len(heldout_png)
    assert executions < inferences, "dynamic batching never merged two requests"
