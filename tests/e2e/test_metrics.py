"""The Python steps' own metrics (maas.runtime.metrics) on the real server's /metrics, beside
Triton's: each request's effect is read as the difference between two scrapes."""

from __future__ import annotations

import io
import time
from collections import Counter

import numpy as np
import pytest
from PIL import Image

from maas import prometheus
from maas.clients.client import Client
from maas.clients.errors import InvalidInput
from maas.runtime import metrics as M
from maas.runtime import names as C
from maas.runtime.metrics import StepMetrics


def scrape(server) -> dict[tuple, float]:
    return prometheus.scrape(f"127.0.0.1:{server.ports.metrics}")


def settled(server) -> dict:
    """A scrape once the steps have nothing left to hand over (what earlier requests, or the
    launcher's probes, left in their buffers): two scrapes a flush period apart agree."""
    last = scrape(server)
    for _ in range(10):
        time.sleep(StepMetrics.FLUSH_S * 1.5)
        now = scrape(server)
        mine = {k: v for k, v in now.items() if k[0].startswith("maas_")}
        if mine == {k: v for k, v in last.items() if k[0].startswith("maas_")}:
            return now
        last = now
    raise AssertionError("the steps' metrics kept changing with no requests")


def delta(before: dict, after: dict, name: str, **labels) -> float:
    key = (name, tuple(sorted(labels.items())))
    return after.get(key, 0.0) - before.get(key, 0.0)


def scrape_when(server, done) -> dict:
    """A scrape for which done(scrape) holds (the steps hand their counts to the server every
    StepMetrics.FLUSH_S), or the last one after 10 s: the asserts then say what is missing."""
    return prometheus.scrape_until(f"127.0.0.1:{server.ports.metrics}", done)


def predicted(before: dict, after: dict) -> Counter:
    """Images classified since `before`, by top-1 label."""
    counted = Counter()
    for key, value in after.items():
        name, labels = key[0], dict(key[1])
        if name == M.PREDICTED.name and labels.get("model") == C.POSTPROCESS:
            counted[labels["label"]] += value - before.get(key, 0.0)
    return +counted


def test_classifier_steps_count_images_refusals_and_predictions(server, heldout_png, offline):
    images = heldout_png[:12]
    before = settled(server)
    with Client(server.grpc_url, protocol="grpc", batch_size=4) as client:
        got = client.classify(images, top_k=1)
    with Client(server.grpc_url, protocol="grpc", batch_size=1) as client:
        bad = client.classify_each([b"", b"not an image at all"], top_k=1)
    assert all(isinstance(b, InvalidInput) for b in bad)
    pre = {"model": C.PREPROCESS}
    after = scrape_when(
        server,
        lambda now: (
            delta(before, now, M.REJECTED.name, reason="not_an_image", **pre) >= 1
            and sum(predicted(before, now).values()) >= len(images)
        ),
    )
    assert delta(before, after, M.REJECTED.name, reason="empty", **pre) == 1
    assert delta(before, after, M.REJECTED.name, reason="not_an_image", **pre) == 1
    # Every good image's size as sent.
    sizes = [w * h for w, h in (Image.open(io.BytesIO(png)).size for png in images)]
    assert delta(before, after, f"{M.IMAGE_PIXELS.name}_count", **pre) == len(images)
    assert delta(before, after, f"{M.IMAGE_PIXELS.name}_sum", **pre) == sum(sizes)
    # The first bucket that holds them all has them all (Triton writes its bound as "1024").
    bucket = min(b for b in M.IMAGE_PIXELS.buckets if b >= max(sizes))
    le = f"{bucket:g}"
    assert delta(before, after, f"{M.IMAGE_PIXELS.name}_bucket", le=le, **pre) == len(images)
    # The top-1 label of each answered image, as offline ONNX Runtime says.
    labels = [c.predictions[0].label for c in got]
    assert labels == [b.decode() for b in offline["labels"][: len(images), 0]]
    assert predicted(before, after) == Counter(labels)
    # Triton's own metrics are on the same endpoint (the parser names counters *_total).
    ok = delta(before, after, "nv_inference_request_success_total", model=C.ENSEMBLE, version="1")
    assert ok == 3  # the 12 images went as 3 requests of 4


def test_forecaster_and_generator_steps_count_their_work(server):
    before = settled(server)
    with Client(server.grpc_url, protocol="grpc") as client:
        client.forecast(np.sin(np.arange(200) / 5.0).tolist(), horizon=3)
        with pytest.raises(InvalidInput, match="finite"):
            client.forecast([1.0, float("nan"), *([2.0] * 100)])
        assert len(client.generate(digit=3, seed=1, count=2)) == 2
    after = scrape_when(
        server,
        lambda now: (
            delta(before, now, M.FORECASTS.name, model=C.FORECASTER_POSTPROCESS) >= 1
            and delta(before, now, M.GENERATED.name, model=C.GAN_PNG) >= 2
            and delta(
                before, now, M.REJECTED.name, model=C.FORECASTER_PREPROCESS, reason="not_finite"
            )
            >= 1
        ),
    )
    assert delta(before, after, M.FORECASTS.name, model=C.FORECASTER_POSTPROCESS) == 1
    assert (
        delta(before, after, M.REJECTED.name, model=C.FORECASTER_PREPROCESS, reason="not_finite")
        == 1
    )
    assert delta(before, after, M.GENERATED.name, model=C.GAN_PNG) == 2
