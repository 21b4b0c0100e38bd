"""Client pieces that need no server: URL parsing and the error tree."""

from __future__ import annotations

import ssl

import pytest
from tritonclient.utils import InferenceServerException

from maas.clients.client import TLS, Client, parse_url
from maas.clients.connection import RETRYABLE, Retry
from maas.clients.errors import (
    InferenceFailed,
    InvalidInput,
    ModelNotReady,
    Overloaded,
    ServerUnavailable,
    from_triton,
)


@pytest.mark.parametrize(
    ("url", "protocol", "expected"),
    [
        ("http://localhost:8000", None, ("http", "localhost:8000")),
        ("grpc://10.0.0.1", None, ("grpc", "10.0.0.1:8001")),
        ("localhost:9001", "grpc", ("grpc", "localhost:9001")),
        ("localhost", None, ("http", "localhost:8000")),
        ("grpc://[::1]:7001", None, ("grpc", "[::1]:7001")),
        ("https://lb.example", None, ("https", "lb.example:443")),
    ],
)
def test_parse_url(url, protocol, expected):
    assert parse_url(url, protocol) == expected


def test_tls_options_for_each_tritonclient():
    tls = TLS("ca.pem", "me.pem", "me.key")
    assert tls.kwargs("grpc") == {
        "ssl": True, "root_certificates": "ca.pem", "private_key": "me.key",
        "certificate_chain": "me.pem",
    }  # fmt: skip
    assert tls.kwargs("http") == {
        "ssl": True,
        "ssl_options": {"ca_certs": "ca.pem", "certfile": "me.pem", "keyfile": "me.key"},
    }
    assert TLS().kwargs("grpc") == {"ssl": True}  # the system's CAs
    assert TLS().kwargs("grpc", aio=True) == {"ssl": True}
    aio_http = TLS().kwargs("http", aio=True)  # tritonclient.http.aio takes an SSLContext
    assert aio_http["ssl"] is True and isinstance(aio_http["ssl_context"], ssl.SSLContext)
    with Client("https://127.0.0.1:1") as client:  # https: TLS without being asked
        assert client.protocol == "http" and client.tls == TLS()


@pytest.mark.parametrize(
    ("url", "protocol", "message"),
    [
        ("ftp://x", None, "unsupported protocol"),
        ("grpc://x:1", "http", "says grpc"),
        ("http://", None, "no host"),
    ],
)
def test_parse_url_errors(url, protocol, message):
    with pytest.raises(ValueError, match=message):
        parse_url(url, protocol)


# The front door's refusal (maas/nginx.conf.j2, rendered with 64 in flight).
DOOR = "overloaded, retry later: 64 requests (of this class) are in flight at this front door"


@pytest.mark.parametrize(
    ("status", "message", "kind"),
    [
        ("StatusCode.INVALID_ARGUMENT", "IMAGE: empty image", InvalidInput),
        ("400", "unexpected shape", InvalidInput),
        ("400", "Request for unknown model: 'nope' is not found", ModelNotReady),
        ("StatusCode.UNAVAILABLE", "failed to connect", ServerUnavailable),
        ("StatusCode.NOT_FOUND", "no model", ModelNotReady),
        ("StatusCode.INTERNAL", "boom", InferenceFailed),
        ("StatusCode.UNAVAILABLE", "in ensemble 'x', Exceeds maximum queue size", Overloaded),
        ("503", "in ensemble 'x', Exceeds maximum queue size", Overloaded),
        ("StatusCode.UNAVAILABLE", "in ensemble 'x', Request timeout expired", Overloaded),
        ("503", "Request timeout expired", Overloaded),
        ("503", DOOR, Overloaded),
        ("StatusCode.UNAVAILABLE", DOOR, Overloaded),
        # A step that called another model from inside and got refused there: not a refusal
        # of this request (the stream had recorded its value), so not retried as one.
        ("StatusCode.INTERNAL", "forecaster_rnn: Request timeout expired", InferenceFailed),
    ],
)
def test_error_mapping(status, message, kind):
    error = from_triton(InferenceServerException(message, status=status))
    assert type(error) is kind and error.status == status and message in str(error)
    assert str(error).count("overloaded, retry later") == (kind is Overloaded)  # said once


def test_retries_back_off_with_jitter_and_include_overload():
    waits = [list(Retry(attempts=6, backoff_s=0.1, max_backoff_s=0.4).waits()) for _ in range(50)]
    for run in waits:
        assert len(run) == 5
        for wait, full in zip(run, [0.1, 0.2, 0.4, 0.4, 0.4], strict=True):
            assert full / 2 <= wait <= full
    assert len({run[0] for run in waits}) > 1  # clients refused together come back apart
    assert list(Retry(jitter=0, backoff_s=0.1, max_backoff_s=0.4).waits())[:3] == [0.1, 0.2, 0.4]
    assert issubclass(Overloaded, RETRYABLE)
    with pytest.raises(ValueError, match="jitter"):
        Retry(jitter=1.5)
    with pytest.raises(ValueError, match="attempts >= 1"):
        Retry(attempts=0)


def test_connection_errors_are_unavailable():
    assert isinstance(from_triton(ConnectionRefusedError(111, "refused")), ServerUnavailable)
