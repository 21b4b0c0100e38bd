"""`maas fleet`: N tritonserver replicas on one repository behind nginx, on loopback.

    maas fleet up --replicas 3 [--served-from s3://BUCKET/PREFIX]   # foreground; Ctrl-C stops
    maas fleet status                                               # from another shell
    maas fleet down

Each replica is a TritonServer (maas.serve: explicit model control, its own free ports, its
own watchdog that reloads dead Python stubs). `up` supervises them: a replica whose process
exits is started again on its ports, and the time until it serves again is logged. In front,
nginx (the Debian package, run as our child with a generated config) balances HTTP and gRPC
(`grpc_pass`) over the replicas with passive health checks (maas.balancer, whose guard
refuses the HTTP requests that would crash a tritonserver): a replica that refuses a
connection is left out for `fail_timeout` and the request goes to the next one. A request
goes to another replica only when it could not be sent: one that reached a replica is never
resent (a body that killed one replica must not reach the next). A stream keeps its
state in one replica, so its steps stick to that replica by a hash of the sequence ID
(docs/operate.md, "Streams behind the balancer").

With a tenants file (`--tenants`, maas.tenants), nginx admits only the keys it lists, each at
its own rate and priority class; the file is read again when it changes (no restart).

The fleet's state (pids and ports) is in STATE_DIR/fleet.json for `status` and `down`, and
STATE_DIR/prometheus.yml scrapes every replica's /metrics (maas.prometheus).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import secrets
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from maas import contract as C
from maas.access import Keys
from maas.balancer import Balancer, Nginx, answers, http_ok, require_nginx
from maas.errors import OptionError, ServerError
from maas.files import atomic_write
from maas.processes import running
from maas.prometheus import scrape_config
from maas.serve import Healing, ServerConfig, TritonServer
from maas.server_config import SERVE_CACHE_MB
from maas.tenants import Tenants

STATE_DIR = Path(C.FLEET_STATE_DIR)
log = logging.getLogger(__name__)
ADMIN_KEY_FILE = "admin.key"  # in STATE_DIR, mode 0600: the fleet's admin key
PROMETHEUS_CONFIG = "prometheus.yml"  # in STATE_DIR: `prometheus --config.file=` it


class Fleet:
    """Replicas + nginx. `start`/`stop` (or `with`); `supervise_once` restarts dead replicas
    (`maas fleet up` calls it every half second)."""

    def __init__(
        self,
        repository: Path,
        replicas: int = 2,
        *,
        served_from: str | None = None,
        env: dict[str, str] | None = None,
        balancer: Balancer | None = None,
        state_dir: Path = STATE_DIR,
        backend_dir: Path | None = None,
        keys: Keys | None = None,
        server_args: tuple[str, ...] = (),
        tenants_file: Path | None = None,
    ):
        if replicas < 1:
            raise OptionError("a fleet needs at least one replica")
        self.lb = balancer or Balancer()
        self.keys = keys or Keys()  # one admin key for every replica (maas rollout's)
        self.tenants_file, self._tenants_seen = tenants_file, None
        if tenants_file is not None:
            # nginx checks the tenants' keys; the replicas take only their own, which nginx
            # sends in place of the tenant's (a random one unless given).
            if self.keys.client is None:
                self.keys = Keys(self.keys.admin, secrets.token_urlsafe(24))
            self._tenants_seen = _stamp(tenants_file)
            self.lb = dataclasses.replace(
                self.lb, tenants=Tenants.load(tenants_file), replica_key=self.keys.client
            )
        self.state_dir = Path(state_dir)
        self.events: list[tuple[float, str]] = []
        self.servers = [
            TritonServer(repository, ServerConfig(
                served_from=served_from, env=env or {}, healing=Healing(), backend_dir=backend_dir,
                keys=self.keys, extra_args=server_args, cache_mb=SERVE_CACHE_MB,
            ))
            for _ in range(replicas)
        ]  # fmt: skip
        self.nginx: Nginx | None = None

    @property
    def http_url(self) -> str:
        return f"{self.lb.host}:{self.lb.http}"

    @property
    def grpc_url(self) -> str:
        return f"{self.lb.host}:{self.lb.grpc}"

    def url(self, scheme: str) -> str:
        return self.lb.url(scheme)

    def _event(self, text: str) -> None:
        self.events.append((time.time(), text))
        log.info("fleet: %s", text)

    def start(self) -> Fleet:
        require_nginx()  # before minutes of replica start-up, not after
        try:
            # All launched first, from this thread (a replica dies with the thread that
            # launched it: maas.processes.die_with_parent), so they load their models together.
            for server in self.servers:
                server.launch()
            for server in self.servers:
                server.ready()
            self.nginx = Nginx([s.ports for s in self.servers], self.lb).start()
            self._write_state()
            self._event(
                f"{len(self.servers)} replicas ready behind nginx: {self.url('http')} "
                f"{self.url('grpc')}"
            )
        except BaseException:
            self.stop()
            raise
        return self

    def _write_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        state = {
            "supervisor": os.getpid(),
            "balancer": {"http": self.url("http"), "grpc": self.url("grpc")},
            "nginx": self.nginx.process.pid if self.nginx and self.nginx.process else None,
            "replicas": [
                {"pid": s.process.pid if s.process else None, "http": s.http_url,
                 "grpc": s.grpc_url, "metrics": f"127.0.0.1:{s.ports.metrics}"}
                for s in self.servers
            ],
        }  # fmt: skip
        write_key(self.state_dir / ADMIN_KEY_FILE, self.keys.admin)
        metrics = [replica["metrics"] for replica in state["replicas"]]
        for name, text in (
            (PROMETHEUS_CONFIG, scrape_config(metrics)),
            ("fleet.json", json.dumps(state, indent=2) + "\n"),
        ):
            atomic_write(self.state_dir / name, lambda f, text=text: f.write(text.encode()))

    def reload_tenants(self) -> bool:
        """The tenants file read again if it changed, and nginx reconfigured with it (no
        restart); a file that does not load is reported and the last good one kept. True if
        the front door now serves a new one."""
        if self.tenants_file is None or self.nginx is None:
            return False
        stamp = _stamp(self.tenants_file)
        if stamp == self._tenants_seen:
            return False
        self._tenants_seen = stamp
        try:
            lb = dataclasses.replace(self.lb, tenants=Tenants.load(self.tenants_file))
            self.nginx.reconfigure(lb)
        except (OptionError, ServerError) as e:
            self._event(f"tenants not reloaded, the last good ones serve: {e}")
            return False
        self.lb = lb
        self._event(f"tenants reloaded: {', '.join(repr(t) for t in lb.tenants.tenants)}")
        return True

    def supervise_once(self) -> list[int]:
        """Start again every replica whose tritonserver exited (the indexes restarted); and
        reload the tenants file if it changed."""
        self.reload_tenants()
        restarted = []
        for i, server in enumerate(self.servers):
            proc = server.process
            if proc is None or proc.poll() is None or server.restarting:
                continue
            started = time.monotonic()
            self._event(f"replica {i} exited (code {proc.returncode}): starting it again")
            try:
                server.restart()
            except ServerError as e:
                self._event(f"replica {i} did not come back: {e}")
                continue
            # nginx still counts it failed for fail_timeout; were another replica to die in that
            # time, nginx would have no live upstream and answer 502 (measured: 480 requests
            # in 2 s). A reload (SIGHUP: new workers, old ones finish their requests) starts
            # its peer state afresh.
            if self.nginx is not None:
                self.nginx.reload()
            self._event(f"replica {i} serves again after {time.monotonic() - started:.1f} s")
            restarted.append(i)
        if restarted:
            self._write_state()
        return restarted

    def stop(self) -> None:
        if self.nginx is not None:
            self.nginx.stop()
            self.nginx = None
        # Every replica drains at once: Triton's unload takes seconds a server.
        with ThreadPoolExecutor(max(1, len(self.servers))) as pool:
            list(pool.map(lambda server: server.stop(), self.servers))
        with contextlib.suppress(FileNotFoundError):
            state = json.loads((self.state_dir / "fleet.json").read_text())
            if state.get("supervisor") == os.getpid():
                (self.state_dir / "fleet.json").unlink()
                (self.state_dir / ADMIN_KEY_FILE).unlink(missing_ok=True)
                (self.state_dir / PROMETHEUS_CONFIG).unlink(missing_ok=True)

    def __enter__(self) -> Fleet:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _stamp(path: Path) -> tuple | None:
    """What tells that a file changed: its inode, size, mode and times (a chmod too)."""
    try:
        st = Path(path).stat()
    except OSError:
        return None
    return st.st_ino, st.st_size, st.st_mode, st.st_mtime_ns, st.st_ctime_ns


def read_state(state_dir: Path = STATE_DIR) -> dict | None:
    path = Path(state_dir) / "fleet.json"
    return json.loads(path.read_text()) if path.is_file() else None


def write_key(path: Path, key: str) -> None:
    """The admin key for `maas rollout` from another shell, readable by this user only: in a
    0700 folder, a file made afresh and renamed into place (a link planted at its name is
    replaced, not followed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    atomic_write(path, lambda f: f.write(key.encode() + b"\n"))


def status(state_dir: Path = STATE_DIR) -> dict | None:
    """The fleet's state with each replica's and the balancer's readiness now; None if no
    fleet is up (or its supervisor is gone)."""
    state = read_state(state_dir)
    if state is None or not running(state["supervisor"]):
        return None
    for replica in state["replicas"]:
        replica["ready"] = http_ok(f"http://{replica['http']}/v2/health/ready")
    state["balancer"]["ready"] = answers(f"{state['balancer']['http']}/v2/health/ready")
    return state


def down(state_dir: Path = STATE_DIR, timeout: float = 60.0) -> bool:
    """SIGTERM the supervisor (`maas fleet up`), which stops nginx and every replica; waits
    for it. False if no fleet was up."""
    state = read_state(state_dir)
    if state is None or not running(state["supervisor"]):
        return False
    os.kill(state["supervisor"], signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while running(state["supervisor"]) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not running(state["supervisor"])
