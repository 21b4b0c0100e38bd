"""A user's own ONNX classifier (made by the test: other input size, other labels) served
through our pre/post steps: the answers it must give, over HTTP and gRPC."""

from __future__ import annotations

import io

import pytest
from conftest import COLOURS
from PIL import Image

from maas.clients.client import Client
from maas.clients.errors import InvalidInput


def encoded(colour, size, fmt) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_own_classifier_answers_by_colour(server, scheme):
    url = server.url(scheme)
    images = {
        "red": encoded((230, 20, 30), (100, 80), "PNG"),
        "green": encoded((10, 200, 40), (33, 64), "JPEG"),
        "blue": encoded((20, 30, 240), (40, 48), "WEBP"),
        "grey": encoded((128, 128, 128), (16, 16), "BMP"),
    }
    with Client(url, model="colours") as client:
        results = client.classify(list(images.values()), top_k=4)
        assert [r.top.label for r in results] == list(images)
        assert all(sorted(p.label for p in r.predictions) == sorted(COLOURS) for r in results)
        with pytest.raises(InvalidInput, match="not a recognised image"):
            client.classify([b"not an image"])
