"""Concurrency: requests at once, all answered correctly, with dynamic batching engaged."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import tritonclient.grpc.aio as grpc_aio

from maas.clients.client import Client
from maas.runtime import names as C
from maas.runtime.classify import softmax, top_k


def test_sixteen_concurrent_clients_batched(
    classifier_server, heldout_png, offline, digits, checkpoint, model_counts
):
    before = model_counts(C.CLASSIFIER, classifier_server)

    def worker(w: int) -> list[tuple[int, int]]:
        scheme, url = (
            ("grpc", classifier_server.grpc_url) if w % 2 else ("http", classifier_server.http_url)
        )
        with Client(f"{scheme}://{url}") as client:
            picks = range(w, len(heldout_png), 16)
            got = [client.classify([heldout_png[i]])[0].top.class_id for i in picks]
        return list(zip(picks, got, strict=True))

    with ThreadPoolExecutor(16) as pool:
        answers = dict(pair for part in pool.map(worker, range(16)) for pair in part)
    assert sorted(answers) == list(range(len(heldout_png)))
    served = np.array([answers[i] for i in range(len(heldout_png))])
    assert np.array_equal(served, offline["ids"][:, 0])
    # Against the truth, not only the offline pipeline: the held-out labels, and PyTorch's
    # accuracy on the raw arrays at training time (no decoding, no ONNX).
    served_accuracy = float((served == digits.test_y).mean())
    assert served_accuracy == checkpoint.test_accuracy and served_accuracy > 0.9

    inferences, executions = (
        a - b for a, b in zip(model_counts(C.CLASSIFIER, classifier_server), before, strict=True)
    )
    assert inferences == len(heldout_png)
    assert executions < inferences, "dynamic batching never merged two requests"


async def _with_top_k(classifier_server, images: list[bytes], ks: list[int]):
    """One request per image, each with its own TOP_K, all in flight at once."""
    client = grpc_aio.InferenceServerClient(classifier_server.grpc_url)
    try:

        async def one(image: bytes, k: int):
            tensors = [grpc_aio.InferInput(C.IMAGE, [1, 1], "BYTES"),
                       grpc_aio.InferInput(C.TOP_K, [1, 1], "INT32")]  # fmt: skip
            tensors[0].set_data_from_numpy(np.array([[image]], dtype=object))
            tensors[1].set_data_from_numpy(np.array([[k]], dtype=np.int32))
            return await client.infer(C.ENSEMBLE, tensors)

        return await asyncio.gather(*(one(i, k) for i, k in zip(images, ks, strict=True)))
    finally:
        await client.close()


def test_mixed_top_k_in_one_dynamic_batch(classifier_server, heldout_png, offline, model_counts):
    """Ten requests asking k = 1..10 at once: every k differs, so any batch postprocess runs
    mixes them, and each answer must still have exactly its own k columns, best first."""
    ks = list(range(1, 11))
    want_ids, want_scores = top_k(softmax(offline["logits"][:10]), 10)
    for _attempt in range(5):  # until postprocess really ran two of them as one batch
        before = model_counts(C.POSTPROCESS, classifier_server)
        results = asyncio.run(_with_top_k(classifier_server, heldout_png[:10], ks))
        for i, (k, result) in enumerate(zip(ks, results, strict=True)):
            ids, scores = result.as_numpy(C.CLASS_IDS), result.as_numpy(C.SCORES)
            assert ids.shape == scores.shape == result.as_numpy(C.LABELS).shape == (1, k)
            assert ids[0].tolist() == want_ids[i, :k].tolist()
            np.testing.assert_allclose(scores[0], want_scores[i, :k], rtol=1e-5, atol=1e-6)
        inferences, executions = (
            a - b
            for a, b in zip(model_counts(C.POSTPROCESS, classifier_server), before, strict=True)
        )
        assert inferences == 10
        if executions < inferences:
            break
    assert executions < inferences, "the ten requests never shared a postprocess batch"
