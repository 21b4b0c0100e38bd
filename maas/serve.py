"""Run a real tritonserver on a model repository: `maas serve`, the fleet's replicas, and the
tests' servers.

    with TritonServer("model_repository") as server:      # free ports on loopback
        ...  # server.ports.http is ready and every pipeline has answered a probe request
    TritonServer(repo, ServerConfig(ports=Ports(), healing=Healing())).run()   # maas serve

Its command line comes from its ServerConfig; the binary and backends from maas.backends (the
wheel's Python backend with the stubs' Python's stub, Triton's onnxruntime backend from
--backend-dir or MAAS_BACKEND_DIR). A core model's config.pbtxt runs on that onnxruntime
backend, as in every Triton container; without it, its configs/python.pbtxt is served.
"""

from __future__ import annotations

import collections
import logging
import os
import secrets
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from maas.access import Keys, Ports
from maas.backends import (
    CPU_ONLY_ARGS,
    StubPython,
    backends_in,
    config_name,
    find_tritonserver,
    has_gpu,
    plan_problems,
    python_backend_dir,
    server_tensorrt,
)
from maas.contract import ADMIN_KEY_ENV, CLIENT_KEY_ENV, FORWARD_PATTERN
from maas.errors import Interrupted, ServerError
from maas.processes import die_with_parent, kill_group, remove_shared_memory, stop_group
from maas.server_config import Healing, ServerConfig
from maas.server_log import ServerLog

__all__ = ["Healing", "ServerConfig", "TritonServer"]  # the launcher and what it takes
log = logging.getLogger(__name__)
LOAD_THREADS = (4, 32)  # models loaded at once: at least Triton's default, at most the manifests'


class TritonServer:
    """One tritonserver process. `start`/`stop` (or `with`) for tests and tools; `run` for a
    foreground server that Ctrl-C stops (`maas serve`)."""

    def __init__(self, repository: str | Path, config: ServerConfig | None = None):
        self.repository = Path(repository).resolve()
        self.config = config = config or ServerConfig()
        self.served_from = config.served_from or str(self.repository)
        self.backend_dir = Path(config.backend_dir).resolve() if config.backend_dir else None
        if self.backend_dir is not None and not backends_in(self.backend_dir):
            raise ServerError(f"--backend-dir {config.backend_dir}: no backend folders in it")
        self.python = StubPython.of(config.python)
        self.config_name: str | None = None  # set by command(): PYTHON_CONFIG or None
        self.process: subprocess.Popen | None = None
        self.gpu = has_gpu()
        self.log = ServerLog(self.gpu, config.echo)
        self.watchdog = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._reader: threading.Thread | None = None
        self._signal: int | None = None  # SIGINT/SIGTERM received while `run` is in charge
        self.health_endpoint = None
        self._restarting = threading.Event()
        self._stopping = False
        self._crashes: collections.deque[float] = collections.deque()  # when it died, unasked
        # Names each Python stub's region under /dev/shm: Triton removes them on a clean stop
        # only; maas, what a server that did not stop cleanly (or was killed) left behind.
        self.shm_prefix = f"maas_{secrets.token_hex(6)}_"

    @property
    def ports(self) -> Ports:
        return self.config.ports

    @property
    def keys(self) -> Keys:
        return self.config.keys

    @property
    def restarting(self) -> bool:
        """The watchdog is starting it again on the same ports."""
        return self._restarting.is_set()

    @property
    def healable(self) -> bool:
        """Whether the watchdog may heal it now: it runs, and no one stops or restarts it."""
        proc = self.process
        return (
            self._signal is None
            and not self._stopping
            and not self._restarting.is_set()
            and proc is not None
            and proc.poll() is None
        )

    @property
    def http_url(self) -> str:
        return f"127.0.0.1:{self.ports.http}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.ports.grpc}"

    def url(self, scheme: str) -> str:
        """What maas.clients takes: http://... or grpc://..."""
        return f"{scheme}://{self.http_url if scheme == 'http' else self.grpc_url}"

    def host_of(self, kind: str) -> str:
        """Where `kind` (http, grpc, metrics, health) listens: the configured host, but with TLS
        on (tritonserver has it on gRPC only) every plaintext port stays on loopback, so that
        nothing TLS was asked to protect is reachable in the clear."""
        return self.config.host if kind == "grpc" or self.config.tls is None else "127.0.0.1"

    def command(self) -> list[str]:
        binary, backends = find_tritonserver()
        cmd = [
            str(binary),
            f"--model-repository={self.served_from}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            *(f"--{kind}-address={self.host_of(kind)}" for kind in ("http", "grpc", "metrics")),
            "--log-verbose=0",
            # Explicit model control, everything loaded at start as before: a model whose
            # stub died can be reloaded through the API (maas.health), and versions rolled.
            *(
                ("--model-control-mode=explicit", "--load-model=*")
                if self.config.model_control == "explicit"
                else ()
            ),
            f"--exit-timeout-secs={self.config.exit_timeout_s}",
            f"--model-load-thread-count={self.load_threads()}",
            f"--backend-config=python,shm-region-prefix-name={self.shm_prefix}",
            *(() if self.gpu else CPU_ONLY_ARGS),
            *self.keys.args(),
            # The front door's tenant header reaches the steps as a request parameter (a
            # stream keeps each tenant's sequences apart: maas.tenants).
            *(f"--{kind}-header-forward-pattern={FORWARD_PATTERN}" for kind in ("http", "grpc")),
            *(self.config.tls.grpc_args() if self.config.tls else ()),
        ]
        if backends is not None:  # the wheel's: ours to lay out, with any extra backends
            assert self._tmp is not None
            folder = python_backend_dir(backends, Path(self._tmp.name), self.python.version)
            for name in sorted(backends_in(self.backend_dir) if self.backend_dir else ()):
                if name != "python":  # the wheel's, with this interpreter's stub
                    (folder / name).symlink_to(self.backend_dir / name, target_is_directory=True)
            cmd.append(f"--backend-directory={folder}")
            cmd.append(f"--cache-directory={backends.parent / 'caches'}")
        elif self.backend_dir is not None:  # a container's tritonserver: the folder as given
            folder = self.backend_dir
            cmd.append(f"--backend-directory={folder}")
        else:  # a container's own backends folder, as it is
            folder = binary.parent.parent / "backends"
        if self.config.cache_mb:  # a container's caches are in its default folder
            cmd.append(f"--cache-config=local,size={self.config.cache_mb * 2**20}")
        self.config_name = config_name(self.repository, backends_in(folder))
        if self.config_name:
            cmd.append(f"--model-config-name={self.config_name}")
        return [*cmd, *self.config.extra_args]

    def load_threads(self) -> int:
        """Models loaded at once: all of them. Loading waits on each stub's start and warm-up
        rather than on the CPU; 28 models took 8 s with Triton's 4 threads, 3.6 s with 32."""
        low, high = LOAD_THREADS
        return min(high, max(low, len(list(self.repository.glob("*/config.pbtxt")))))

    def start(self) -> TritonServer:
        return self.launch().ready()

    def launch(self) -> TritonServer:
        """The checks, then the process, without waiting for it to serve: a fleet launches
        every replica from the main thread (see die_with_parent), then waits for each."""
        self._stopping = False
        if not self.repository.is_dir():
            raise ServerError(f"no model repository at {self.repository}: run `maas build`")
        problems = plan_problems(self.repository, *server_tensorrt(find_tritonserver()[1]))
        if problems:
            raise ServerError("cannot serve:\n  " + "\n  ".join(problems))
        try:
            self._launch(wait=False)
        except BaseException:
            self.stop()
            raise
        return self

    def ready(self) -> TritonServer:
        """Wait until it serves (a probe through every pipeline), then start the watchdog."""
        try:
            self._wait_ready()
            healing = self.config.healing
            if healing is not None:
                from maas.health import HealthEndpoint, Watchdog

                self.watchdog = Watchdog(self, healing.interval).start()
                if healing.health_port is not None:
                    self.health_endpoint = HealthEndpoint(
                        self.watchdog, self.host_of("health"), healing.health_port,
                        stale_after=5 * healing.interval,
                    ).start()  # fmt: skip
        except BaseException:
            self.stop()
            raise
        return self

    def restart(self) -> None:
        """Stop tritonserver and start it again on the same ports (the watchdog's last
        resort); the watchdog and the health endpoint keep running."""
        self._restarting.set()
        try:
            proc, self.process = self.process, None
            if proc is not None:
                stop_group(proc, timeout=30.0)
                remove_shared_memory(self.shm_prefix)  # what the one that died left
            if self._tmp is not None:  # a fresh backends folder for the new process
                self._tmp.cleanup()
                self._tmp = None
            self._launch()
        finally:
            self._restarting.clear()

    def _launch(self, wait: bool = True) -> None:
        if self._tmp is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="maas-triton-")
        # The Python stub takes its interpreter environment from PATH: the stubs' Python first.
        # maas's own key variables stay here: the server has its keys from its options, and
        # whatever it is given every Python stub inherits.
        env = self.python.environment({**os.environ, **self.config.env})
        for name in (ADMIN_KEY_ENV, CLIENT_KEY_ENV):
            env.pop(name, None)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                text=True,
                errors="replace",
                start_new_session=True,  # our signals reach it only through us: clean shutdown
                preexec_fn=die_with_parent,
                cwd=self.config.cwd,
            )
        except OSError as e:
            raise ServerError(f"cannot start tritonserver: {e}") from None
        self._reader = threading.Thread(
            target=self.log.read, args=(self.process.stdout,), daemon=True
        )
        self._reader.start()
        if wait:
            self._wait_ready()

    def _wait_ready(self) -> None:
        import tritonclient.http as httpclient

        deadline = time.monotonic() + self.config.start_timeout
        client = httpclient.InferenceServerClient(self.http_url)
        try:
            while True:
                if self._signal is not None:
                    raise Interrupted(self._signal)
                if self.process.poll() is not None:
                    self._reader.join(timeout=5)
                    raise ServerError(
                        f"tritonserver exited with code {self.process.returncode}:\n"
                        f"{self.log.errors()}"
                    )
                try:
                    if client.is_server_ready():
                        break
                except Exception:  # not listening yet
                    pass
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"tritonserver not ready after {self.config.start_timeout:.0f} s:\n"
                        f"{self.log.errors()}"
                    )
                time.sleep(0.05)
            self._probe(client)
        finally:
            client.close()

    def _probe(self, client) -> None:
        """Ready only once a request has gone through every pipeline: /v2/health/ready says
        200 even when a Python stub cannot import its modules (see maas.probe)."""
        from maas.probe import Probes

        for error in Probes.of(self.repository, self.keys.headers).run(client).values():
            if error is not None:
                raise ServerError(f"tritonserver is up but {error}\n{self.log.errors()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (Triton drains), SIGKILL if it hangs (`drain` off: at once); its exit code."""
        self._stopping = True
        if self.health_endpoint is not None:
            self.health_endpoint.stop()
            self.health_endpoint = None
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        proc, self.process = self.process, None
        code = None
        if proc is not None:
            code = stop_group(proc, timeout) if self.config.drain else kill_group(proc)
            remove_shared_memory(self.shm_prefix)
            if self._reader is not None:
                self._reader.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None
        return code

    def run(self, on_ready: Callable[[TritonServer], None] | None = None) -> int:
        """Start, call `on_ready`, block until the server exits; returns its exit code.

        SIGINT/SIGTERM are handled from the first instruction on: before the process exists
        they cancel the start, after it they are forwarded (Triton drains and exits). Whatever
        happens, the server is stopped before this returns or raises."""

        def forward(signum, _frame):
            self._signal = signum
            proc = self.process
            if proc is not None and proc.poll() is None:
                proc.send_signal(signum)

        old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
        try:
            self.start()
            if self._signal is None and on_ready is not None:
                on_ready(self)
            while True:
                proc = self.process
                code = proc.wait()
                # A restart by the watchdog ends one process and starts the next.
                while self._restarting.is_set() and self._signal is None:
                    time.sleep(0.1)
                if self._signal is not None:
                    if code not in (0, -self._signal):
                        print(self._unclean(code), flush=True)
                    return -self._signal
                if self.process not in (None, proc):
                    continue  # the watchdog started the next one
                if not self._restart_after_crash(code):
                    return code
        except ServerError:
            if self._signal is None:
                raise
            return -self._signal  # a stop asked for during start-up, not a failure
        finally:
            self.stop()
            for s, handler in old.items():
                signal.signal(s, handler)

    def _restart_after_crash(self, code: int) -> bool:
        """tritonserver exited without being asked: start it again on the same ports, where
        healing is on and it has not died `restarts_per_minute` times in the last minute
        (a server that dies at once would otherwise be restarted for ever)."""
        healing = self.config.healing
        if healing is None or self._stopping:
            return False
        now = time.monotonic()
        while self._crashes and now - self._crashes[0] > 60:
            self._crashes.popleft()
        self._crashes.append(now)
        if len(self._crashes) > healing.restarts_per_minute:
            log.error("tritonserver died (exit code %s) %d times in a minute: giving up",
                      code, len(self._crashes))  # fmt: skip
            return False
        text = (f"tritonserver died (exit code {code}): starting it again on the same ports "
                f"({len(self._crashes)} of {healing.restarts_per_minute} a minute)")  # fmt: skip
        if self.watchdog is not None:
            self.watchdog.events.append((time.time(), text))
        log.warning(text)
        try:
            self.restart()
        except ServerError as e:
            log.error("tritonserver did not start again: %s", str(e).splitlines()[0])
            return self._signal is None and self._restart_after_crash(code)
        return True

    def _unclean(self, code: int) -> str:
        return (
            f"[maas] tritonserver did not stop cleanly in {self.config.exit_timeout_s} s (exit "
            f"code {code}: a model it could not unload, such as one whose stub died); its "
            "processes have been stopped"
        )

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
