"""The client given several URLs (replicas without a balancer): a request that finds its
server away goes to the next one; without retries the refusal is the caller's."""

from __future__ import annotations

import socket

import pytest

from maas.clients.client import Client, Retry
from maas.clients.errors import ServerUnavailable


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens there once closed


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_dead_url_first_is_skipped(server, heldout_png, offline, scheme):
    dead = f"{scheme}://127.0.0.1:{_closed_port()}"
    with Client([dead, server.url(scheme)]) as client:
        [got] = client.classify(heldout_png[:1], top_k=1)
        assert client.address == server.url(scheme).split("://")[1]  # it moved on and stays
    assert got.predictions[0].class_id == offline["ids"][0, 0]
    no_retry = Client([dead, server.url(scheme)], retry=Retry(attempts=1))
    with no_retry, pytest.raises(ServerUnavailable):
        no_retry.classify(heldout_png[:1])


def test_one_protocol_per_client():
    with pytest.raises(ValueError, match="one protocol"):
        Client(["http://127.0.0.1:8000", "grpc://127.0.0.1:8001"])
    with pytest.raises(ValueError, match="no URL"):
        Client([])
