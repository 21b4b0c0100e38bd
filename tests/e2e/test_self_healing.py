"""Self-healing with a real SIGKILL: a step's Python stub dies under steady load; the health
check turns red, the watchdog reloads the model, and it serves again. A client without
retries sees a few failures; one with the default retry policy sees none. Also: a stub that
dies during start-up warm-up, and a clean stop after a stub died.

Run with -s to see the measured figures (the closing note of issue 10 quotes them)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from maas.clients.client import Client, Retry
from maas.errors import ServerError
from maas.health import CENSUS_S
from maas.processes import in_group, stubs
from maas.runtime import names as C
from maas.serve import Healing, ServerConfig, TritonServer

INTERVAL = 1.0  # the watchdog's check interval in these tests

# step kind -> (the model whose stub is killed, the client call that goes through it)
VICTIMS = {
    "pre": (C.PREPROCESS, lambda c, png: c.classify([png])),
    "core": (C.CLASSIFIER, lambda c, png: c.classify([png])),
    "post": (C.POSTPROCESS, lambda c, png: c.classify([png])),
    "gan_core": (C.GAN_GENERATOR, lambda c, png: c.generate(3, 1, 2)),
    "vae_unbatched_post": (C.VAE_SAMPLE_PNG, lambda c, png: c.sample(1, 2)),
}


@pytest.fixture(scope="module")
def healing(repository, triton):
    # Port 0: bound when the server is ready. A port picked free before the start could be
    # taken meanwhile by one of the start's own connections (one CI run: EADDRINUSE).
    healing = Healing(interval=INTERVAL, health_port=0)
    with triton(repository, ServerConfig(healing=healing)) as server:
        yield server, f"http://127.0.0.1:{server.health_endpoint.port}/health"


def health_code(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except urllib.error.HTTPError as e:
        return e.code


def kill_stub(server, model: str) -> float:
    [pid, *_] = stubs(server.process.pid)[model]
    os.kill(pid, signal.SIGKILL)
    return time.monotonic()


@pytest.mark.parametrize("kind", list(VICTIMS))
def test_a_dead_stub_is_detected_and_reloaded_under_load(healing, heldout_png, kind):
    server, health_url = healing
    model, call = VICTIMS[kind]
    assert health_code(health_url) == 200
    plain = Client(f"grpc://{server.grpc_url}", retry=Retry(attempts=1))
    retrying = Client(f"grpc://{server.grpc_url}")  # the default policy
    outcomes = {"plain": [], "retrying": []}  # (monotonic time, ok)
    stop = threading.Event()

    def load(name, client):
        while not stop.is_set():
            try:
                call(client, heldout_png[0])
                ok = True
            except Exception:
                ok = False
            outcomes[name].append((time.monotonic(), ok))

    threads = [threading.Thread(target=load, args=item) for item in
               (("plain", plain), ("retrying", retrying))]  # fmt: skip
    for t in threads:
        t.start()
    time.sleep(0.5)  # steady load first
    events_before = len(server.watchdog.events)
    killed = kill_stub(server, model)

    def served_again() -> bool:  # the plain client's last answer since the kill is a success
        after = [ok for t, ok in outcomes["plain"] if t >= killed]
        return bool(after) and after[-1]

    # Recovered: health green again and the plain client served, then load with no failure
    # until two watchdog checks have finished since (a failure starts them again; 15 s at
    # most). Meanwhile health must stay green and the watchdog quiet: no relapse, no second
    # reload, no needless restart.
    red = green = recovered = recovered_at = None
    relapsed, seen_checks = [], []

    def checks_since(when: float) -> int:  # the watchdog's checks finished after `when`
        last = server.watchdog.health().checked_at
        if last > when and last != seen_checks[-1]:
            seen_checks.append(last)
        return sum(t > when for t in seen_checks)

    while time.monotonic() - killed < 15 and (recovered is None or checks_since(recovered_at) < 2):
        code = health_code(health_url)
        if red is None and code == 503:
            red = time.monotonic() - killed
        elif red is not None and green is None and code == 200:
            green = time.monotonic()
        if recovered is not None and any(not ok for t, ok in outcomes["plain"] if t > recovered):
            recovered = None
        if recovered is None and green is not None and served_again():
            recovered, recovered_at = time.monotonic(), time.time()  # events are wall-clock
            seen_checks = [server.watchdog.health().checked_at]
        elif recovered is not None and code != 200:
            relapsed.append(code)
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join()

    events = server.watchdog.events[events_before:]
    detected = [t for t, text in events if text.startswith("unhealthy") and model in text]
    after = [(t - killed, ok) for t, ok in outcomes["plain"] if t >= killed]
    failed = [t for t, ok in after if not ok]
    serving_again = next((t for t, ok in after if ok and t > max(failed, default=0)), None)
    failed_retrying = sum(not ok for t, ok in outcomes["retrying"] if t >= killed)
    print(f"\n{kind} ({model}): health red after {red} s; watchdog: "
          f"{[(round(t - time.time() + (time.monotonic() - killed), 2), e) for t, e in events]}; "
          f"requests after the kill: {len(after)} plain, {len(failed)} failed; "
          f"served again after {serving_again} s; with retries: {failed_retrying} failed of "
          f"{sum(t >= killed for t, _ in outcomes['retrying'])}")  # fmt: skip
    assert detected, events
    # The stub census turns it red (0.04-0.26 s here), not the probe round: a probe that
    # meets the dying stub waits ~2 s for Triton to fail it (CI once saw 3.0 s that way).
    assert red is not None and red <= CENSUS_S + 1.5  # slack for a busy machine
    assert serving_again is not None and serving_again <= 10.0
    assert recovered is not None and recovered - killed <= 10.0 and relapsed == []
    assert [e for t, e in events if t >= recovered_at] == []  # nothing healed after it
    assert failed_retrying == 0
    assert health_code(health_url) == 200
    assert len(stubs(server.process.pid)[model]) >= 1


def test_a_stream_is_reloaded_and_starts_afresh(healing):
    server, health_url = healing
    with Client(f"grpc://{server.grpc_url}") as client:
        for i in range(3):
            step = client.observe(77, 330.0 + i, start=i == 0)
        assert step.held == 3
        [dead] = stubs(server.process.pid)[C.FORECASTER_STREAM]
        killed = kill_stub(server, C.FORECASTER_STREAM)

        def reloaded() -> bool:  # a new stub, not the killed one before the census saw it die
            alive = stubs(server.process.pid).get(C.FORECASTER_STREAM, [])
            return health_code(health_url) == 200 and bool(alive) and dead not in alive

        while time.monotonic() - killed < 10 and not reloaded():
            time.sleep(0.1)
        time.sleep(INTERVAL)
        assert health_code(health_url) == 200
        # Its state lived in the dead stub: a new sequence works; the old one is gone.
        assert client.observe(78, 330.0, start=True, end=True).held == 1


@pytest.fixture
def one_server(classifier_repository):
    """A server of its own, without the watchdog (heal=False)."""
    # Triton waits its exit timeout for a model whose stub died: 1 s, not 5, for this test.
    server = TritonServer(classifier_repository, ServerConfig(exit_timeout_s=1)).start()
    yield server
    server.stop()


def test_a_clean_stop_after_a_stub_died(one_server, heldout_png):
    server = one_server
    group = server.process.pid
    kill_stub(server, C.PREPROCESS)
    with Client(f"grpc://{server.grpc_url}", retry=Retry(attempts=1)) as client:
        for _ in range(3):  # failed requests are what made Triton wait its full exit timeout
            with pytest.raises(Exception, match="is not healthy"):
                client.classify([heldout_png[0]])
    started = time.monotonic()
    server.stop()
    took = time.monotonic() - started
    print(f"\nstop after a dead stub and 3 failed requests: {took:.1f} s")
    assert took < server.config.exit_timeout_s + 5
    assert in_group(group) == []  # nothing of it is left running


def test_a_stub_that_dies_during_warm_up_fails_the_start_clearly(classifier_repository, tmp_path):
    copy = tmp_path / "repository"
    shutil.copytree(classifier_repository, copy)
    (copy / C.POSTPROCESS / "1" / "model.py").write_text(
        "import os, signal\n\n"
        "class TritonPythonModel:\n"
        "    def execute(self, requests):  # warm-up is the first call\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    started = time.monotonic()
    server = TritonServer(copy)
    with pytest.raises(ServerError) as err:
        server.start()
    took = time.monotonic() - started
    print(f"\nstart with a stub dying in warm-up: refused after {took:.1f} s")
    assert C.POSTPROCESS in str(err.value)
    assert took < 120
    assert server.process is None


def test_health_command_for_exec_probes(healing, repository):
    import subprocess
    import sys

    server, _ = healing
    maas = str(Path(sys.executable).with_name("maas"))
    run = subprocess.run(
        [maas, "health", "--repository", str(repository), "--url", f"http://{server.http_url}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["ok"] is True
    down = subprocess.run(
        [maas, "health", "--repository", str(repository), "--url", "http://127.0.0.1:1"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert down.returncode == 1 and "image_classifier" in down.stderr
    assert np.isfinite(json.loads(run.stdout)["seconds"])
