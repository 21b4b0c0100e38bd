"""Concurrency: 16 clients at once, all answered correctly, with dynamic batching engaged."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from maas import contract as C
from maas.clients.client import Client


def test_sixteen_concurrent_clients_batched(server, heldout_png, offline, model_counts):
    before = model_counts(C.CLASSIFIER)

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
        a - b for a, b in zip(model_counts(C.CLASSIFIER), before, strict=True)
    )
    assert inferences == len(heldout_png)
    assert executions < inferences, "dynamic batching never merged two requests"
