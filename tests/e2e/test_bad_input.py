"""Every kind of bad input gets an error naming the problem (gRPC INVALID_ARGUMENT, HTTP 400);
the server stays ready and the next good request is answered; a bad image in a dynamic batch
fails only its own request."""

from __future__ import annotations

import asyncio
import io
import struct
import zlib

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import InferenceServerException

from maas.clients.client import Client
from maas.clients.errors import InvalidInput
from maas.runtime import names as C


def _huge_png_header() -> bytes:
    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(b""))
        + chunk(b"IEND", b"")
    )


def _big_real_png() -> bytes:
    # 5000x4000 = 20 Mpixel of real (compressible) pixels: over the 16 Mpixel default limit.
    buf = io.BytesIO()
    Image.new("RGB", (5000, 4000), (30, 60, 90)).save(buf, format="PNG")
    return buf.getvalue()


BAD_IMAGES = {
    "non_image": (b"GIF89a? no, just text pretending", "not a recognised image"),
    "empty": (b"", "empty image"),
    "truncated_png": (None, "truncated or corrupt PNG"),
    "bomb_header": (_huge_png_header(), "image too large"),
    "over_pixel_limit": (None, "over the limit of 16777216"),
}


@pytest.fixture(scope="module")
def bad_images(heldout_png):
    images = {k: v for k, (v, _) in BAD_IMAGES.items()}
    images["truncated_png"] = heldout_png[0][: len(heldout_png[0]) // 2]
    images["over_pixel_limit"] = _big_real_png()
    return images


def assert_still_serving(classifier_server, heldout_png, offline):
    with Client(f"grpc://{classifier_server.grpc_url}") as client:
        assert client.is_ready()
        assert client.classify(heldout_png[5:6])[0].top.class_id == offline["ids"][5, 0]


@pytest.mark.parametrize("case", list(BAD_IMAGES))
@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_bad_image_named_then_good_answered(
    classifier_server, bad_images, heldout_png, offline, case, scheme
):
    url = classifier_server.url(scheme)
    with Client(url) as client, pytest.raises(InvalidInput) as err:
        client.classify([bad_images[case]])
    assert BAD_IMAGES[case][1] in str(err.value)
    assert err.value.status == ("400" if scheme == "http" else "StatusCode.INVALID_ARGUMENT")
    assert_still_serving(classifier_server, heldout_png, offline)


def _raw_infer(classifier_server, scheme, inputs_spec):
    """Send tensors exactly as given, bypassing our client's checks."""
    module = httpclient if scheme == "http" else grpcclient
    client = module.InferenceServerClient(
        classifier_server.http_url if scheme == "http" else classifier_server.grpc_url
    )
    inputs = []
    for name, array, datatype in inputs_spec:
        tensor = module.InferInput(name, list(array.shape), datatype)
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    try:
        return client.infer(C.ENSEMBLE, inputs)
    finally:
        client.close()


@pytest.mark.parametrize("scheme", ["http", "grpc"])
@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("wrong_datatype", "data-type is 'FP32', but model 'image_classifier' expects 'BYTES'"),
        ("wrong_shape", "shape"),
        ("batch_too_large", "batch-size must be <= 64"),
        ("top_k_zero", "TOP_K must be at least 1"),
    ],
)
def test_bad_tensors_rejected(classifier_server, heldout_png, offline, scheme, case, message):
    image = np.array([[heldout_png[0]]], dtype=object)
    spec = {
        "wrong_datatype": [(C.IMAGE, np.zeros((1, 1), np.float32), "FP32")],
        "wrong_shape": [
            (C.IMAGE, np.array([[heldout_png[0], heldout_png[1]]], dtype=object), "BYTES")
        ],
        "batch_too_large": [(C.IMAGE, np.array([[heldout_png[0]]] * 65, dtype=object), "BYTES")],
        "top_k_zero": [(C.IMAGE, image, "BYTES"), (C.TOP_K, np.zeros((1, 1), np.int32), "INT32")],
    }[case]
    with pytest.raises(InferenceServerException) as err:
        _raw_infer(classifier_server, scheme, spec)
    assert message in str(err.value)
    assert str(err.value.status()) in ("400", "StatusCode.INVALID_ARGUMENT")
    assert_still_serving(classifier_server, heldout_png, offline)


def test_bad_image_fails_only_its_own_request_in_a_batch(
    classifier_server, heldout_png, bad_images, offline, model_counts
):
    """32 requests at once, one of them broken: the broken one fails, the 31 others succeed,
    and preprocess ran fewer times than it got requests, so they did share batches."""
    before = model_counts(C.PREPROCESS, classifier_server)
    bad_at = 13

    async def run():
        client = grpc_aio.InferenceServerClient(classifier_server.grpc_url)
        try:

            async def one(i):
                data = bad_images["truncated_png"] if i == bad_at else heldout_png[i]
                tensor = grpc_aio.InferInput(C.IMAGE, [1, 1], "BYTES")
                tensor.set_data_from_numpy(np.array([[data]], dtype=object))
                return await client.infer(C.ENSEMBLE, [tensor])

            return await asyncio.gather(*(one(i) for i in range(32)), return_exceptions=True)
        finally:
            await client.close()

    results = asyncio.run(run())
    failed = [i for i, r in enumerate(results) if isinstance(r, Exception)]
    assert failed == [bad_at]
    assert "truncated or corrupt PNG" in str(results[bad_at])
    for i, r in enumerate(results):
        if i != bad_at:
            assert r.as_numpy(C.CLASS_IDS)[0, 0] == offline["ids"][i, 0]
    inferences, executions = (
        a - b for a, b in zip(model_counts(C.PREPROCESS, classifier_server), before, strict=True)
    )
    assert inferences == 32 and executions < 32
    assert_still_serving(classifier_server, heldout_png, offline)
