"""maas fleet: two real tritonserver replicas behind a real nginx, on loopback. Requests over
HTTP and gRPC through the balancer reach both replicas; `status` and `down` work from the
state file; a replica killed with SIGKILL under load is started again, and what the clients
saw meanwhile is counted, without and with the client's retries."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from maas import contract as C
from maas import metrics as M
from maas.cli import main as cli
from maas.clients.client import Client, Retry
from maas.clients.errors import InvalidInput
from maas.fleet import PROMETHEUS_CONFIG, Balancer, Fleet, find_nginx, nginx_config, status
from maas.health import stubs
from maas.prometheus import Prometheus, find_prometheus, scrape, scrape_config
from maas.serve import TLS, Ports

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed")
THREADS = 4  # client threads under load


@pytest.fixture(scope="module")
def fleet_repository(classifier_repository, tmp_path_factory) -> Path:
    """The classifier's pipeline with a second version of the classifier on disk (a copy of
    the first: a new build, for the rollout), the config still serving version 1."""
    repo = tmp_path_factory.mktemp("fleet-repo") / "model_repository"
    shutil.copytree(classifier_repository, repo)
    shutil.copytree(repo / C.CLASSIFIER / "1", repo / C.CLASSIFIER / "2")
    return repo


@pytest.fixture(scope="module")
def fleet(fleet_repository, tmp_path_factory):
    ports = Ports.free()
    lb = Balancer(http=ports.http, grpc=ports.grpc)
    state = tmp_path_factory.mktemp("fleet")
    with Fleet(fleet_repository, 2, balancer=lb, state_dir=state, on_event=print) as group:
        yield group


def _ensemble_requests(server) -> int:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats = client.get_inference_statistics(C.ENSEMBLE)["model_stats"][0]
    finally:
        client.close()
    return int(stats["inference_stats"]["success"]["count"])


def test_the_generated_nginx_config(tmp_path):
    text = nginx_config([Ports(1, 2, 3), Ports(4, 5, 6)], Balancer(http=80, grpc=81), tmp_path)
    assert "server 127.0.0.1:1 max_fails=1" in text and "server 127.0.0.1:4 max_fails=1" in text
    assert "server 127.0.0.1:2 max_fails=1" in text and "grpc_pass grpc://triton_grpc" in text
    assert "listen 127.0.0.1:81 http2" in text and "client_max_body_size 64m" in text
    assert "ssl" not in text
    for name in ("cert.pem", "key.pem", "ca.pem"):
        (tmp_path / name).write_text("PEM")
    tls = TLS(tmp_path / "cert.pem", tmp_path / "key.pem", tmp_path / "ca.pem")
    text = nginx_config([Ports(1, 2, 3)], Balancer(http=80, grpc=81, tls=tls), tmp_path)
    assert "listen 127.0.0.1:80 ssl;" in text and "listen 127.0.0.1:81 ssl http2;" in text
    assert text.count("ssl_verify_client on;") == 2 and f"ssl_client_certificate {tmp_path}" in text


def test_the_generated_scrape_config_names_every_replica():
    config = json.loads(scrape_config(["127.0.0.1:9", "127.0.0.1:19"], interval_s=2))
    assert config["global"]["scrape_interval"] == "2s"
    [job] = config["scrape_configs"]
    groups = [(g["targets"], g["labels"]["replica"]) for g in job["static_configs"]]
    assert groups == [(["127.0.0.1:9"], "0"), (["127.0.0.1:19"], "1")]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_requests_through_the_balancer_reach_every_replica(fleet, scheme, heldout_png, offline):
    before = [_ensemble_requests(s) for s in fleet.servers]
    with Client(fleet.url(scheme), batch_size=1) as client:
        got = client.classify(heldout_png[:24], top_k=1)  # 24 requests of one image
    ids = [c.predictions[0].class_id for c in got]
    np.testing.assert_array_equal(ids, offline["ids"][:24, 0])
    served = [_ensemble_requests(s) - b for s, b in zip(fleet.servers, before, strict=True)]
    assert sum(served) == 24 and min(served) > 0, served


def test_the_balancer_refuses_a_body_over_its_limit(fleet):
    """nginx answers 413 from the request's Content-Length alone, before any of the body (or a
    replica) is involved; a body under the limit goes through to Triton (which refuses it)."""
    host, port = fleet.http_url.rsplit(":", 1)

    def status_line(length: int, body: bytes = b"") -> str:
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(
                f"POST /v2/models/{C.ENSEMBLE}/infer HTTP/1.1\r\nHost: {host}\r\n"
                f"Content-Length: {length}\r\nConnection: close\r\n\r\n".encode()
                + body
            )
            return sock.makefile("rb").readline().decode().strip()

    assert status_line(64 * 2**20 + 1) == "HTTP/1.1 413 Request Entity Too Large"
    assert status_line(4, b"nope").split()[1] in ("400", "500")  # Triton's own parser


def test_status_reads_the_state_and_asks_each_replica(fleet):
    state = status(fleet.state_dir)
    assert state is not None and state["supervisor"] == os.getpid()
    assert [r["pid"] for r in state["replicas"]] == [s.process.pid for s in fleet.servers]
    assert all(r["ready"] for r in state["replicas"]) and state["balancer"]["ready"]


@pytest.mark.skipif(find_prometheus() is None, reason="prometheus is not installed")
def test_prometheus_scrapes_every_replica_and_sees_the_steps_metrics(fleet, tmp_path):
    """The fleet's generated scrape config names every replica; a real Prometheus on it (at a
    1 s interval) scrapes them all and holds what each replica's /metrics says of the
    Python steps' refusals, after 4 bad requests through the balancer."""
    generated = json.loads((fleet.state_dir / PROMETHEUS_CONFIG).read_text())  # YAML as JSON
    metrics = [f"127.0.0.1:{s.ports.metrics}" for s in fleet.servers]
    [job] = generated["scrape_configs"]
    assert [t for group in job["static_configs"] for t in group["targets"]] == metrics
    config = tmp_path / "prometheus.yml"
    config.write_text(scrape_config(metrics, interval_s=1))
    name, labels = M.REJECTED.name, {"model": C.PREPROCESS, "reason": "empty"}
    key = (name, tuple(sorted(labels.items())))
    before = [scrape(m).get(key, 0.0) for m in metrics]
    with Client(fleet.url("http"), batch_size=1) as client:
        refused = client.classify_each([b""] * 4)
    assert all(isinstance(r, InvalidInput) for r in refused)
    deadline = time.monotonic() + 10  # the steps hand their counts over every second
    while sum(truth := [scrape(m).get(key, 0.0) for m in metrics]) < sum(before) + 4:
        assert time.monotonic() < deadline, (before, truth)
        time.sleep(0.2)
    assert all(t > b for t, b in zip(truth, before, strict=True))  # round robin: both refused
    query = f'{name}{{model="{C.PREPROCESS}",reason="empty"}}'
    with Prometheus(config, Ports.free().http) as prom:
        deadline = time.monotonic() + 30
        while True:
            up = {t["labels"]["replica"]: t["health"] for t in prom.targets()}
            seen = {r["metric"]["replica"]: float(r["value"][1]) for r in prom.query(query)}
            if up == {"0": "up", "1": "up"} and seen == {"0": truth[0], "1": truth[1]}:
                break
            assert time.monotonic() < deadline, (up, seen, truth)
            time.sleep(0.5)
        # Triton's own metrics come from the same targets.
        assert len(prom.query('nv_inference_request_success{model="image_classifier"}')) == 2


def _classifier_by_version(server) -> dict[str, int]:
    """Successful classifier requests so far on one replica, per version."""
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        stats = client.get_inference_statistics(C.CLASSIFIER)["model_stats"]
    finally:
        client.close()
    return {s["version"]: int(s["inference_stats"]["success"]["count"]) for s in stats}


def _versions(server) -> list[str]:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(server.http_url)
    try:
        index = client.get_model_repository_index(headers=server.keys.headers)
    finally:
        client.close()
    ready = [m for m in index if m["name"] == C.CLASSIFIER and m["state"] == "READY"]
    return sorted(m["version"] for m in ready)


def test_rollout_and_rollback_under_load_fail_no_request(fleet, fleet_repository, heldout_png):
    """Version 1 -> 2 on both replicas, then back, then a version that is not there, under
    load from 4 client threads over gRPC through nginx with the client's retries off: no
    request may fail; only versions 1 and 2
    are ever loaded, and version 2 answered between the two (Triton's per-version
    statistics; a version's statistics go with it when it is unloaded, and an ensemble's
    when it is loaded again, as the rollout does)."""
    common = ["--state-dir", str(fleet.state_dir), "--repository", str(fleet_repository)]
    with under_load(fleet.url("grpc"), heldout_png, Retry(attempts=1)) as outcomes:
        time.sleep(1.0)
        started = time.monotonic()
        assert cli(["rollout", C.CLASSIFIER, "--to", "2", *common]) == 0
        rolled = time.monotonic() - started
        assert [_versions(s) for s in fleet.servers] == [["2"], ["2"]]
        time.sleep(1.0)
        on_two = sum(_classifier_by_version(s).get("2", 0) for s in fleet.servers)
        assert cli(["rollback", C.CLASSIFIER, *common]) == 0
        assert [_versions(s) for s in fleet.servers] == [["1"], ["1"]]
        # A version that is not in the repository: refused, the replica stays as it was.
        assert cli(["rollout", C.CLASSIFIER, "--to", "7", *common]) == 1
        assert [_versions(s) for s in fleet.servers] == [["1"], ["1"]]
        time.sleep(0.5)
    failed = outcomes.count(False)
    print(f"rollout+rollback under load: {len(outcomes)} requests, {failed} failed, rollout "
          f"{rolled:.1f} s, version 2 answered {on_two} classifier requests")  # fmt: skip
    assert failed == 0 and len(outcomes) > 100
    assert on_two > 0  # version 2 really served between the rollout and the rollback


@contextlib.contextmanager
def under_load(url: str, images, retry: Retry, threads: int = THREADS):
    """Client threads sending one image at a time until the block ends; yields the outcomes
    (True: answered) as they come."""
    stop, outcomes = threading.Event(), []

    def send():
        with Client(url, batch_size=1, retry=retry) as client:
            for i in itertools.count():
                if stop.is_set():
                    return
                try:
                    client.classify([images[i % len(images)]], top_k=1)
                    outcomes.append(True)
                except Exception:
                    outcomes.append(False)

    workers = [threading.Thread(target=send) for _ in range(threads)]
    for w in workers:
        w.start()
    try:
        yield outcomes
    finally:
        stop.set()
        for w in workers:
            w.join(30)


@pytest.mark.parametrize("retries", [False, True], ids=["no-client-retry", "client-retry"])
def test_a_replica_killed_under_load_is_replaced(fleet, heldout_png, retries):
    retry = Retry() if retries else Retry(attempts=1)
    with under_load(fleet.url("grpc"), heldout_png, retry, THREADS) as outcomes:
        time.sleep(1.5)
        victim = fleet.servers[0]
        old_pid = victim.process.pid
        os.kill(old_pid, signal.SIGKILL)
        killed_at = time.monotonic()
        while not fleet.supervise_once():  # what `maas fleet up` does every half second
            time.sleep(0.2)
        back_after = time.monotonic() - killed_at
        time.sleep(1.0)  # traffic to both again
    failed = outcomes.count(False)
    print(f"retries={retries}: {len(outcomes)} requests, {failed} failed, "
          f"replica back after {back_after:.1f} s")  # fmt: skip
    assert victim.process.pid != old_pid and status(fleet.state_dir)["replicas"][0]["ready"]
    assert len(outcomes) > 100
    # nginx sends a request that cannot reach the dead replica to the other one; what can
    # still fail is a request already in flight on it when it died: one per client thread at
    # most. The client's own retries cover those too.
    assert failed <= (THREADS if not retries else 0), failed


@pytest.mark.parametrize("retries", [False, True], ids=["no-client-retry", "client-retry"])
def test_a_stub_killed_inside_a_replica_under_load(fleet, heldout_png, retries):
    """SIGKILL of one preprocess stub in replica 0 under load through nginx. The replica
    itself stays up, so nginx keeps sending it requests, and those that reach the dead stub
    come back as Triton's error ("Stub process ... is not healthy"): an answer, which nginx
    passes on. The replica's watchdog reloads the model (new stubs); the client's retries go
    through nginx again. Nothing is restarted."""
    retry = Retry() if retries else Retry(attempts=1)
    victim = fleet.servers[0]
    server_pid = victim.process.pid
    with under_load(fleet.url("grpc"), heldout_png, retry, THREADS) as outcomes:
        time.sleep(1.0)
        before = len(outcomes)
        alive = stubs(server_pid)[C.PREPROCESS]
        os.kill(alive[0], signal.SIGKILL)
        killed_at, killed_wall = time.monotonic(), time.time()
        while True:  # healed: the watchdog reloaded the model, its stubs are all there again
            now = stubs(server_pid).get(C.PREPROCESS, [])
            events = [text for t, text in victim.watchdog.events if t >= killed_wall]
            reloaded = any(e.startswith(f"reloaded {C.PREPROCESS}") for e in events)
            if reloaded and len(now) == len(alive) and alive[0] not in now:
                break
            assert time.monotonic() - killed_at < 30, events
            time.sleep(0.1)
        healed_after = time.monotonic() - killed_at
        time.sleep(1.0)
    after = outcomes[before:]
    failed = after.count(False)
    print(f"stub kill, retries={retries}: {len(after)} requests after the kill, {failed} "
          f"failed; model reloaded after {healed_after:.1f} s")  # fmt: skip
    assert victim.process.pid == server_pid  # the replica was not restarted
    # Answers kept coming (few: while the model reloads, requests on that replica wait).
    assert after.count(True) >= THREADS, after.count(True)
    if retries:
        assert failed == 0, failed


def test_the_cli_brings_a_fleet_up_reports_it_and_takes_it_down(classifier_repository, tmp_path):
    import subprocess
    import sys

    state = tmp_path / "state"
    ports = Ports.free()
    up = subprocess.Popen(
        [sys.executable, "-m", "maas.cli", "fleet", "up", "--replicas", "1", "--no-build",
         "--repository", str(classifier_repository), "--state-dir", str(state),
         "--http-port", str(ports.http), "--grpc-port", str(ports.grpc)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while (current := status(state)) is None or not current["balancer"]["ready"]:
            assert up.poll() is None, up.stdout.read()
            assert time.monotonic() < deadline, "the fleet did not come up in 120 s"
            time.sleep(0.5)
        assert current["supervisor"] == up.pid and len(current["replicas"]) == 1
        assert (state / "admin.key").stat().st_mode & 0o077 == 0  # this user's only
        assert cli(["fleet", "status", "--state-dir", str(state)]) == 0
        assert cli(["fleet", "up", "--no-build", "--state-dir", str(state)]) == 1  # one at a time
        assert cli(["fleet", "down", "--state-dir", str(state)]) == 0
        assert up.wait(60) == 0
        assert not (state / "fleet.json").exists() and not (state / "admin.key").exists()
        assert cli(["fleet", "status", "--state-dir", str(state)]) == 1  # none up now
    finally:
        if up.poll() is None:
            up.terminate()
            up.wait(60)
