"""Health that tells the truth, and recovery without a person: both live here, for every
family a repository serves and for each server (each replica of a fleet runs its own).

    watchdog = Watchdog(server)   # TritonServer starts one when its config has `healing`
    watchdog.health()                    # the last check: Health(ok, failing, checked_at)

Triton's /v2/health/ready keeps answering 200 when a Python-backend stub has died and every
request through its model fails. So the watchdog
- counts each Python-backend model's stub processes (children of tritonserver) against its
  instance count, every CENSUS_S seconds on a thread of its own: a model with two instances
  and one dead stub fails every other request, which one probe request can miss, and a probe
  that meets a stub dying under it waits ~2 s for Triton to give up, which the count does not;
- sends one real request through every served pipeline every `interval` seconds (the
  launcher's start-up probe, maas.probe; a stream gets a one-request sequence).
A model short of stubs, or a pipeline whose request fails, is unhealthy; those models (for a
pipeline: the models its error names, as in "Stub process 'preprocess_0_0' is not healthy",
else all of its models) are reloaded through the model-control API (the server runs in
explicit model-control mode for this). Still failing after `max_reloads` reloads: the whole
server is restarted on the same ports.

A stream's state (the forecaster_stream's windows) lives in its stub: a dead stub loses it,
and the sequences it held start afresh after the reload.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from maas.errors import ServerError
from maas.processes import stubs

# "Stub process 'preprocess_0_0' is not healthy." -> the model is `preprocess`
# (an instance is named <model>_<group>_<index>).
DEAD_STUB = re.compile(r"Stub process '(.+?)_\d+_\d+' is not healthy")


@dataclass(frozen=True)
class Health:
    ok: bool
    failing: dict[str, str] = field(default_factory=dict)  # pipeline -> its error
    checked_at: float = 0.0  # time.time() of the check
    seconds: float = 0.0  # how long the check took

    def as_dict(self) -> dict:
        return {"ok": self.ok, "failing": self.failing, "checked_at": self.checked_at,
                "seconds": round(self.seconds, 4)}  # fmt: skip


def named_models(error: str) -> list[str]:
    """The models a Triton error says have a dead stub."""
    return sorted(set(DEAD_STUB.findall(error)))


def python_instances(repository: Path, config_name: str | None = None) -> dict[str, int]:
    """Python-backend model -> the stubs Triton runs for it (its CPU instance count)."""
    from maas.probe import read_configs

    return {
        name: sum(g.count or 1 for g in config.instance_group) or 1
        for name, config in read_configs(repository, config_name).items()
        if config.backend == "python"
    }


def census(server_pid: int, expected: dict[str, int]) -> dict[str, str]:
    """The Python-backend models short of stub processes: model -> what is missing."""
    running = {model: len(pids) for model, pids in stubs(server_pid).items()}
    return {
        model: f"{count - running.get(model, 0)} of its {count} Python stub processes "
        "are not running"
        for model, count in expected.items()
        if running.get(model, 0) < count
    }


def check(http_url: str, probes, server_pid: int | None = None, expected=None) -> Health:
    """The stub census (when `server_pid` and `expected` are given) and one request through
    every pipeline (`probes`: maas.probe.Probes); never raises."""
    import tritonclient.http as httpclient

    started = time.perf_counter()
    failing = census(server_pid, expected) if server_pid is not None and expected else {}
    if failing:  # known broken: heal now rather than after a round of probes
        return Health(False, failing, time.time(), time.perf_counter() - started)
    client = httpclient.InferenceServerClient(http_url, connection_timeout=5, network_timeout=10)
    try:
        for name, error in probes.run(client).items():
            if error is not None:
                failing[name] = error
    finally:
        client.close()
    return Health(not failing, failing, time.time(), time.perf_counter() - started)


RELOAD_TIMEOUT_S = 30.0  # a model's reload takes 1.5-4 s here
log = logging.getLogger(__name__)
CENSUS_S = 0.25  # a census reads /proc: ~2 ms here


class Watchdog:
    """Checks `server` every `interval` s and heals what fails (see the module docstring).
    Each detection, reload and restart is logged (maas.health) and kept in `events`."""

    def __init__(self, server, interval: float = 2.0, max_reloads: int = 2):
        from maas.probe import Probes

        self.server = server
        self.interval = interval
        self.max_reloads = max_reloads
        self.probes = Probes.of(server.repository, server.keys.headers)
        self.expected = python_instances(server.repository, server.config_name)
        self.events: list[tuple[float, str]] = []  # (time.time(), what happened), for tests
        self._health = Health(True, {}, time.time())
        self._stop = threading.Event()
        self._wake = threading.Event()  # the census found a dead stub: check (and heal) now
        self._threads: list[threading.Thread] = []
        self._reloads: dict[str, int] = {}

    def health(self) -> Health:
        return self._health

    def start(self) -> Watchdog:
        self._threads = [
            threading.Thread(target=self._loop, name="maas-watchdog", daemon=True),
            threading.Thread(target=self._count_stubs, name="maas-census", daemon=True),
        ]
        for thread in self._threads:
            thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=30)

    def check(self) -> Health:
        process = self.server.process
        pid = process.pid if process is not None else None
        return check(self.server.http_url, self.probes, pid, self.expected)

    def _event(self, text: str) -> None:
        self.events.append((time.time(), text))
        log.warning(text)

    def _census(self) -> dict[str, str]:
        process = self.server.process
        return census(process.pid, self.expected) if process and self.expected else {}

    def _count_stubs(self) -> None:
        """Turns health red within CENSUS_S of a stub's death, even while a probe round
        (which may be the one waiting on that stub) runs, and wakes the loop to heal it."""
        while not self._stop.wait(CENSUS_S):
            failing = self._census()
            if failing and not failing.keys() <= self._health.failing.keys():
                self._health = Health(False, {**self._health.failing, **failing}, time.time())
                self._wake.set()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            health = self.check()
            if health.ok and (dead := self._census()):  # a stub died during the probes
                health = Health(False, dead, health.checked_at, health.seconds)
            self._health = health
            if self._stop.is_set():
                return
            if health.ok:
                self._reloads.clear()
                continue
            if not self.server.healable:
                # Stopping (Ctrl-C: Triton drains, its models go), or being started again by
                # someone else (a fleet's supervisor): healing now would race either.
                continue
            self.heal(health)

    def heal(self, health: Health) -> None:
        """Reload what failed; restart the server when reloading did not help."""
        for name, error in health.failing.items():
            self._event(f"unhealthy: {name}: {error.splitlines()[0][:200]}")
        if any(self._reloads.get(p, 0) >= self.max_reloads for p in health.failing):
            self._event("reloading did not help: restarting tritonserver")
            try:
                self.server.restart()
            except ServerError as e:  # Ctrl-C during the restart, or it failed to start
                self._event(f"restart failed: {str(e).splitlines()[0]}")
                return
            self._reloads.clear()
            return
        models = set()
        for name, error in health.failing.items():
            self._reloads[name] = self._reloads.get(name, 0) + 1
            if name in self.expected:  # a model short of stubs
                models.add(name)
            else:  # a pipeline whose request failed
                models.update(named_models(error) or self.probes.models(name))
        import tritonclient.http as httpclient

        # Bounded: once (1 run in 3 of the test suite) a reload after a stub's death never
        # returned; a timeout counts as a failed reload, and after max_reloads the server
        # is restarted instead of the watchdog waiting for ever.
        client = httpclient.InferenceServerClient(
            self.server.http_url, network_timeout=RELOAD_TIMEOUT_S
        )
        try:
            for model in sorted(models):
                started = time.perf_counter()
                try:
                    # Triton skips a load of a loaded model whose config is unchanged, so
                    # the config goes with it, marked: new instances, new stubs.
                    config = client.get_model_config(model)
                    config.setdefault("parameters", {})["maas_reloaded_at"] = {
                        "string_value": f"{time.time():.3f}"
                    }
                    client.load_model(
                        model, config=json.dumps(config), headers=self.server.keys.headers
                    )
                    self._event(f"reloaded {model} in {time.perf_counter() - started:.1f} s")
                except Exception as e:
                    self._event(f"reloading {model} failed: {e}")
        finally:
            client.close()
        self._health = self.check()


class HealthEndpoint:
    """GET /health on its own port: 200 and the last check as JSON when every pipeline
    answered, 503 when one did not or the last check is older than `stale_after` seconds
    (a load balancer's or a Kubernetes readiness probe's target)."""

    def __init__(self, watchdog: Watchdog, host: str, port: int, stale_after: float = 10.0):
        watch = watchdog

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                if self.path.rstrip("/") != "/health":
                    self.send_error(404, "only /health")
                    return
                health = watch.health()
                fresh = time.time() - health.checked_at <= stale_after
                body = json.dumps({**health.as_dict(), "fresh": fresh}).encode()
                self.send_response(200 if health.ok and fresh else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # a probe every few seconds: not worth a log line
                pass

        self.httpd = ThreadingHTTPServer((host, port), Handler)
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        """The port it listens on: the one asked for, or the OS's choice when asked for 0."""
        return self.httpd.server_address[1]

    def start(self) -> HealthEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
