"""A stream behind the balancer: every step of a Triton sequence reaches the replica that holds
its window (nginx hashes the sequence ID: read from the body by the guard over HTTP, from the
client's maas-sequence header over gRPC), while the sequences spread over the replicas. With
round robin, a sequence's second step would find no window on the other replica."""

from __future__ import annotations

import shutil

import pytest

from maas.access import Ports
from maas.balancer import Balancer, Nginx, has_nginx
from maas.clients.client import Client
from maas.runtime import names as C

pytestmark = pytest.mark.skipif(not has_nginx(), reason="nginx or its njs module missing")
SEQUENCES, STEPS = 16, 5  # 16: all on one of two replicas by chance once in 2**15 runs


@pytest.fixture(scope="module")
def stream_replicas(repository, tmp_path_factory, triton):
    repo = tmp_path_factory.mktemp("streams") / "model_repository"
    shutil.copytree(repository / C.FORECASTER_STREAM, repo / C.FORECASTER_STREAM)
    with triton(repo) as one, triton(repo) as two:
        yield [one, two]


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_each_sequence_stays_on_one_replica(stream_replicas, model_counts, protocol):
    free = Ports.free()
    lb = Balancer(http=free.http, grpc=free.grpc)
    first = 1 if protocol == "http" else 1001  # IDs of their own: no sequence is reused

    def served() -> list[int]:  # requests each replica's stream has answered
        return [model_counts(C.FORECASTER_STREAM, s)[0] for s in stream_replicas]

    before = served()
    with Nginx([s.ports for s in stream_replicas], lb), Client(lb.url(protocol)) as client:
        for sequence in range(first, first + SEQUENCES):
            for step in range(STEPS):
                value = 300.0 + sequence + step
                answer = client.observe(sequence, value, start=step == 0, end=step == STEPS - 1)
                assert answer.held == step + 1, (sequence, step, answer)
    each = [n - b for n, b in zip(served(), before, strict=True)]
    assert sum(each) == SEQUENCES * STEPS and all(each), each
    assert all(n % STEPS == 0 for n in each), each  # whole sequences on each
