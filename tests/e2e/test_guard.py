"""The guard fails closed: each form of a body that once passed it and aborted the replica
behind it (tritonserver 2.51 sizes an input from its stated shape) is refused with a 4xx that
says why, through the real nginx in front of two replicas; neither replica's process changes,
and a good request is answered right after each."""

from __future__ import annotations

import gzip
import http.client
import json
import zlib

import pytest

from maas.access import Ports
from maas.balancer import Balancer, Nginx, has_nginx
from maas.runtime import names as C
from maas.serve import TritonServer

pytestmark = pytest.mark.skipif(not has_nginx(), reason="nginx or its njs module missing")

BOMB = [26048, 15028854, 3962]  # a shape that aborts a bare tritonserver 2.51
PLAIN = json.dumps({"inputs": [{"name": C.IMAGE, "datatype": "FP32", "shape": BOMB, "data": [1]}]})


def raw(text: str) -> bytes:
    return text.encode()


# name -> (body, headers, status, what the error says)
BYPASSES = {
    "nan literal": (raw(PLAIN.replace("[1]}", "[NaN]}")), {}, 400, "not JSON"),
    "infinity literal": (raw(PLAIN.replace("[1]}", "[Infinity]}")), {}, 400, "not JSON"),
    "key given twice": (  # Triton reads the first shape, JSON.parse the last
        raw(PLAIN.replace('"data"', '"shape": [1], "data"')), {}, 400, 'key "shape" is given twice',
    ),
    "gzip": (gzip.compress(raw(PLAIN)), {"Content-Encoding": "gzip"}, 415, "uncompressed"),
    "deflate": (zlib.compress(raw(PLAIN)), {"Content-Encoding": "deflate"}, 415, "uncompressed"),
    "byte order mark": (b"\xef\xbb\xbf" + raw(PLAIN), {}, 400, "byte order mark"),
    "header length with trailing characters": (
        raw(PLAIN), {"Inference-Header-Content-Length": f"{len(PLAIN)}abc"}, 400, "digits only",
    ),
    "header length beyond the body": (
        raw(PLAIN), {"Inference-Header-Content-Length": str(len(PLAIN) + 1)}, 400, "digits only",
    ),
    "json over the bound": (
        raw(json.dumps({"id": "x" * 1_100_000, **json.loads(PLAIN)})), {}, 413, "binary data",
    ),
    "not json at all": (b"\x00\x01garbage", {}, 400, "not JSON"),
}  # fmt: skip


def post(address: str, body: bytes, headers: dict) -> tuple[int, bytes]:
    host, port = address.rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        conn.request("POST", f"/v2/models/{C.ENSEMBLE}/infer", body=body, headers=headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


@pytest.fixture(scope="module")
def two_replicas(classifier_repository):
    free = Ports.free()
    lb = Balancer(http=free.http, grpc=free.grpc)
    one, two = TritonServer(classifier_repository), TritonServer(classifier_repository)
    with one, two, Nginx([one.ports, two.ports], lb):
        yield f"{lb.host}:{lb.http}", (one, two)


@pytest.mark.parametrize("case", list(BYPASSES))
def test_each_bypass_is_refused_and_no_replica_dies(two_replicas, heldout_png, case):
    from maas.clients.client import Client

    address, replicas = two_replicas
    pids = [s.process.pid for s in replicas]
    body, headers, status, says = BYPASSES[case]
    got, answer = post(address, body, headers)
    assert got == status, (got, answer[:300])
    assert says in json.loads(answer)["error"]
    for server in replicas:
        assert server.process.poll() is None
    assert [s.process.pid for s in replicas] == pids
    with Client(f"http://{address}") as client:  # a good request, right after
        assert len(client.classify(heldout_png[:2])) == 2
