"""Held-out images through the real server equal offline ONNX Runtime on the same bytes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from maas.clients.client import AsyncClient, Client
from maas.runtime import names as C


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_served_predictions_equal_offline(
    classifier_server, heldout_png, offline, digits, checkpoint, scheme
):
    url = classifier_server.url(scheme)
    with Client(url, batch_size=16) as client:
        results = client.classify(heldout_png, top_k=3)
    ids = np.array([[p.class_id for p in r.predictions] for r in results])
    scores = np.array([[p.score for p in r.predictions] for r in results])
    labels = [[p.label for p in r.predictions] for r in results]
    assert len(results) == len(heldout_png) == 270
    assert np.array_equal(ids, offline["ids"])
    np.testing.assert_allclose(scores, offline["scores"], rtol=1e-5, atol=1e-6)
    assert labels == [[b.decode() for b in row] for row in offline["labels"]]
    served_accuracy = float((ids[:, 0] == digits.test_y).mean())
    offline_accuracy = float((offline["ids"][:, 0] == digits.test_y).mean())
    assert served_accuracy == offline_accuracy == checkpoint.test_accuracy


def test_default_top_k_comes_from_the_config(classifier_server, heldout_png):
    with Client(f"grpc://{classifier_server.grpc_url}") as client:
        [default] = client.classify(heldout_png[:1])
        [one] = client.classify(heldout_png[:1], top_k=1)
        [all_] = client.classify(heldout_png[:1], top_k=50)
    assert len(default.predictions) == 3 and len(one.predictions) == 1
    assert len(all_.predictions) == 10  # capped at the number of classes
    assert abs(sum(p.score for p in all_.predictions) - 1.0) < 1e-5
    assert one.top == default.top


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_async_client(classifier_server, heldout_png, offline, scheme):
    url = classifier_server.url(scheme)

    async def run():
        async with AsyncClient(url, batch_size=8) as client:
            return await asyncio.gather(*(client.classify([img]) for img in heldout_png[:24]))

    results = [r[0] for r in asyncio.run(run())]
    assert [r.top.class_id for r in results] == offline["ids"][:24, 0].tolist()


def test_classifier_path_is_the_one_named(classifier_server):
    """The native server really runs the classifier on the onnxruntime backend, the session
    server on the Python backend: the parametrisation is not two runs of the same path."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(classifier_server.http_url)
    try:
        config = client.get_model_config(C.CLASSIFIER)
    finally:
        client.close()
    native = classifier_server.config_name is None
    assert (config.get("platform", ""), config.get("backend", "")) == (
        ("onnxruntime_onnx", "onnxruntime") if native else ("", "python")
    )
