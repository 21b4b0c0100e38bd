"""Run a real tritonserver on a model repository: `maas serve`, and the tests' server fixture.

    with TritonServer("model_repository", Ports.free()) as server:
        ...  # server.ports.http is ready and every ensemble has answered a probe request

The binary is `tritonserver` from PATH (NGC containers) or, failing that, the CPU build inside
the nvidia-pytriton wheel. For the wheel's Python backend we lay out a backend folder holding
the stub built for the Python the stubs run (`python`: this interpreter by default), and put
that Python's bin/ first on PATH: the stub takes its environment from it (numpy; the built
steps bring the rest, see build/shipped.py).

`backend_dir` (`maas serve --backend-dir`, or MAAS_BACKEND_DIR) names a folder of more backends,
e.g. Triton's `onnxruntime/`, laid out beside the wheel's Python backend. A core model's
config.pbtxt runs on Triton's onnxruntime backend, as in every Triton container; on a server
without it (the bare wheel) each core model's configs/python.pbtxt is served instead
(`--model-config-name=python`: ONNX Runtime in the Python backend, from this environment).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from maas import contract as C

# Triton's restricted APIs (--http-restricted-api, --grpc-restricted-protocol): a request to
# one of them must carry the header with the key. Model control lives in model-repository.
ADMIN_APIS = ("model-repository", "shared-memory", "trace", "logging")
CLIENT_APIS = ("inference",)
ADMIN_HEADER, CLIENT_HEADER = C.ADMIN_HEADER, C.CLIENT_HEADER


@dataclass(frozen=True)
class Keys:
    """The admin key (model control, repository, shared memory, trace, logging) and, when the
    user asks for one, the client key (inference). No admin key given: a random one, known
    only to this process (the watchdog's reloads), so those APIs are closed by default.
    Health, metadata, config and statistics stay open. The values never appear in maas's
    output or its own command line; Triton takes them only on its command line, so processes
    of the same user can read them from /proc (run it under its own user)."""

    admin: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    client: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, admin_file: Path | None = None, client_file: Path | None = None) -> Keys:
        """Keys from files (--admin-key-file/--client-key-file) or MAAS_ADMIN_KEY /
        MAAS_CLIENT_KEY; an empty value is an error, not an open API."""

        def read(path: Path | None, env: str) -> str | None:
            value = path.read_text().strip() if path else os.environ.get(env)
            if value is not None and not value:
                raise ServerError(f"{path or env} is empty: give a key or leave it unset")
            return value

        admin = read(admin_file, C.ADMIN_KEY_ENV)
        client = read(client_file, C.CLIENT_KEY_ENV)
        return cls(client=client) if admin is None else cls(admin, client)

    @property
    def headers(self) -> dict[str, str]:
        """What maas's own requests carry: both keys (a header Triton does not check is ignored)."""
        return {ADMIN_HEADER: self.admin, **({CLIENT_HEADER: self.client} if self.client else {})}

    def args(self) -> list[str]:
        restricted = [(ADMIN_APIS, ADMIN_HEADER, self.admin)]
        if self.client:
            restricted.append((CLIENT_APIS, CLIENT_HEADER, self.client))
        return [
            f"--{flag}={','.join(apis)}:{header}={key}"
            for apis, header, key in restricted
            for flag in ("http-restricted-api", "grpc-restricted-protocol")
        ]


class ServerError(RuntimeError):
    """tritonserver failed to start or a model failed to load; the message holds its log."""


class Interrupted(ServerError):
    """SIGINT or SIGTERM arrived while the server was starting; it has been stopped."""

    def __init__(self, signum: int):
        super().__init__(f"interrupted by {signal.Signals(signum).name} during start-up")
        self.signum = signum


STUB = "triton_python_backend_stub"
# What this tritonserver build prints on a machine without a GPU, though all is well: a CUDA
# helper, pinned memory and the ensemble's CUDA stream all fall back to the CPU path.
CPU_ONLY_NOISE = re.compile(
    r"CudaDriverHelper has not been initialized"
    r"|unable to create stream for \S+: CUDA driver version is insufficient"
    r"|failed to allocate pinned system memory: no pinned memory pool"
)
# Options that keep it off the CUDA paths it can avoid (pools, GPU metrics) when there is no GPU.
CPU_ONLY_ARGS = (
    "--pinned-memory-pool-byte-size=0",
    "--cuda-memory-pool-byte-size=0:0",
    "--allow-gpu-metrics=false",
)


def has_gpu() -> bool:
    """An NVIDIA driver is present (the device node every CUDA process opens)."""
    return Path("/dev/nvidiactl").exists()


@dataclass(frozen=True)
class TLS:
    """A server certificate and its key (PEM files) and, for mutual TLS, the CA whose
    certificates clients must present. tritonserver speaks TLS on gRPC only (its HTTP has
    none): HTTPS is the balancer's (maas fleet: nginx)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def __post_init__(self):
        for name in ("cert", "key", "client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ServerError(f"TLS {name.replace('_', ' ')}: no file at {path}")

    def grpc_args(self) -> list[str]:
        args = [f"--grpc-server-cert={self.cert}", f"--grpc-server-key={self.key}"]
        if self.client_ca is None:
            return [*args, "--grpc-use-ssl=true"]
        return [*args, "--grpc-use-ssl-mutual=true", f"--grpc-root-cert={self.client_ca}"]


def die_with_parent() -> None:
    """In the child before exec (Popen's preexec_fn): SIGTERM when the launcher dies, even by
    SIGKILL (Linux), so no path leaves an orphaned server, nginx or Prometheus holding the
    ports. The launcher is the thread that called Popen: maas starts them from the main thread."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> Ports:
        """Three ports the OS reports free on loopback right now."""
        socks = [socket.socket() for _ in range(3)]
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()


def find_tritonserver() -> tuple[Path, Path | None]:
    """(binary, pytriton backends folder or None when the binary's own backends are used)."""
    on_path = shutil.which("tritonserver")
    if on_path:
        return Path(on_path), None
    try:
        import pytriton
    except ImportError:
        raise ServerError(
            "no tritonserver: put one on PATH (NGC container) or `pip install nvidia-pytriton`"
        ) from None
    root = Path(pytriton.__file__).parent / "tritonserver"
    return root / "bin" / "tritonserver", root / "backends"


NATIVE_BACKEND = "onnxruntime"  # what a core model's config.pbtxt runs on
PYTHON_CONFIG = "python"  # configs/python.pbtxt: build.configs.core_python_config
BACKEND_DIR_ENV = "MAAS_BACKEND_DIR"


def backend_dir_default() -> Path | None:
    value = os.environ.get(BACKEND_DIR_ENV)
    return Path(value) if value else None


def backends_in(folder: Path) -> set[str]:
    """The backends a backends folder holds (its subfolders: python, onnxruntime, ...)."""
    return {e.name for e in folder.iterdir() if e.is_dir()} if folder.is_dir() else set()


def has_native_backend(folder: Path | None) -> bool:
    """Whether a backends folder (--backend-dir) holds an onnxruntime backend."""
    return folder is not None and NATIVE_BACKEND in backends_in(folder)


def _config_or_none(path: Path):
    """A repository's config.pbtxt as Triton's ModelConfig, or None where it is missing or
    does not parse: the server's launcher leaves reporting those to Triton."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    try:
        return text_format.Parse(path.read_text(), mc.ModelConfig())
    except (OSError, text_format.ParseError):
        return None


def config_name(repository: Path, backends: set[str]) -> str | None:
    """None where the server can serve every config.pbtxt as written; PYTHON_CONFIG where it
    has no onnxruntime backend and core models need one (each has a Python-backend alternate);
    ServerError naming the models that need it and have none."""
    if NATIVE_BACKEND in backends:
        return None
    native = [
        path.parent
        for path in sorted(repository.glob("*/config.pbtxt"))
        if (c := _config_or_none(path)) is not None
        and NATIVE_BACKEND in (c.backend, c.platform.removesuffix("_onnx"))
    ]
    orphans = [m.name for m in native if not (m / "configs" / f"{PYTHON_CONFIG}.pbtxt").is_file()]
    if orphans:
        raise ServerError(
            f"{', '.join(orphans)}: need Triton's onnxruntime backend, which this tritonserver "
            "has not, and have no Python-backend alternate (configs/python.pbtxt); give "
            "--backend-dir with an onnxruntime backend, or rebuild them with maas build"
        )
    return PYTHON_CONFIG if native else None


@dataclass(frozen=True)
class StubPython:
    """The Python the Python backend's stubs run: its version picks the stub, its bin/ goes
    first on the server's PATH (a stub finds its environment through `python3` there, as in
    a container) and its library folder on LD_LIBRARY_PATH (the stub links libpython)."""

    executable: Path
    version: str
    libdir: str

    @classmethod
    def of(cls, executable: str | Path | None = None) -> StubPython:
        """This interpreter's (None: its stub links the system's libpython, as it always
        has), or another's, asked of it."""
        if executable is None:
            version = f"{sys.version_info.major}.{sys.version_info.minor}"
            return cls(Path(sys.executable), version, "")
        ask = "import sys, sysconfig; print('%d.%d' % sys.version_info[:2]); "
        ask += "print(sysconfig.get_config_var('LIBDIR') or '')"
        try:
            out = subprocess.run([str(executable), "-c", ask], capture_output=True, text=True,
                                 check=True, timeout=60).stdout.split("\n")  # fmt: skip
        except (OSError, subprocess.SubprocessError) as e:
            raise ServerError(f"cannot run the stubs' Python {executable}: {e}") from None
        return cls(Path(executable), out[0], out[1])

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        """`env` with this Python first on PATH and its libpython findable."""
        path = f"{self.executable.parent}{os.pathsep}{env.get('PATH', '')}"
        libs = os.pathsep.join(p for p in (self.libdir, env.get("LD_LIBRARY_PATH", "")) if p)
        return {**env, "PATH": path, "LD_LIBRARY_PATH": libs}


def python_backend_dir(backends: Path, into: Path, version: str | None = None) -> Path:
    """A backends folder like the wheel's, with the Python stub for `version` (default: this
    interpreter's)."""
    version = version or f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = backends.parent / "python_backend_stubs" / version / STUB
    if not stub.is_file():
        raise ServerError(f"nvidia-pytriton has no Python backend stub for Python {version}")
    for entry in backends.iterdir():
        (into / entry.name).symlink_to(entry, target_is_directory=entry.is_dir())
    python = into / "python"
    python.unlink()
    python.mkdir()
    for entry in (backends / "python").iterdir():
        # A stub put into the wheel's folder by hand or by another tool may be built for
        # another Python: ours, for this interpreter, takes its place.
        if entry.name != STUB:
            (python / entry.name).symlink_to(entry)
    (python / STUB).symlink_to(stub)
    return into


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """`sig` to a child (if it still runs), SIGKILL if it hangs past `timeout`; its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def _terminate(proc: subprocess.Popen, timeout: float) -> int:
    """SIGTERM (Triton drains in-flight requests for its --exit-timeout-secs), SIGKILL if it
    hangs past `timeout`; then whatever is left of its process group (Python stubs that a
    server which did not stop cleanly leaves behind, still running). Its exit code."""
    stop_process(proc, signal.SIGTERM, timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # none left
        os.killpg(proc.pid, signal.SIGKILL)  # its own group: start_new_session=True
    return proc.returncode


def server_tensorrt(backends: Path | None) -> tuple[bool, str | None]:
    """(does this tritonserver have a tensorrt backend, the TensorRT version it loads (from
    libnvinfer.so.X.Y.Z), or None when unknown)."""
    folder = (backends or Path("/opt/tritonserver/backends")) / "tensorrt"
    if not folder.is_dir():
        return False, None
    for lib in (folder, Path("/usr/lib/x86_64-linux-gnu"), Path("/usr/lib/aarch64-linux-gnu")):
        for path in sorted(lib.glob("libnvinfer.so.*.*.*")) if lib.is_dir() else ():
            return True, path.name.removeprefix("libnvinfer.so.")
    return True, None


def plan_problems(repository: Path, has_backend: bool, version: str | None) -> list[str]:
    """What keeps the repository's TensorRT plans from loading on this server, one line each:
    no tensorrt backend, or a plan built by another TensorRT (major.minor) than it loads.
    Anything else wrong with a config is left for Triton to report."""
    problems = []
    for path in sorted(repository.glob("*/config.pbtxt")):
        config = _config_or_none(path)
        if config is None or config.platform != "tensorrt_plan":
            continue
        if not has_backend:
            problems.append(
                f"{config.name}: a TensorRT plan, and this tritonserver has no tensorrt "
                f"backend (use a Triton container, or build another variant: maas build "
                f"FAMILY --variant onnx)"
            )
            continue
        for number in config.version_policy.specific.versions:
            manifest = path.parent / str(number) / "manifest.json"
            built = json.loads(manifest.read_text())["libraries"].get("tensorrt")
            if version and built and built.split(".")[:2] != version.split(".")[:2]:
                problems.append(
                    f"{config.name} version {number}: plan built with TensorRT {built}, this "
                    f"tritonserver loads TensorRT {version}; rebuild it where they match"
                )
    return problems


class TritonServer:
    """One tritonserver process. `start`/`stop` (or `with`) for tests and tools; `run` for a
    foreground server that Ctrl-C stops (`maas serve`)."""

    def __init__(
        self,
        repository: str | Path,
        ports: Ports | None = None,
        *,
        echo: bool = False,
        extra_args: tuple[str, ...] = (),
        start_timeout: float = 180.0,
        host: str = "127.0.0.1",
        heal: bool = False,
        health_port: int | None = None,
        check_interval: float = 2.0,
        exit_timeout_s: int = 5,
        backend_dir: str | Path | None = None,
        served_from: str | None = None,
        env: dict[str, str] | None = None,
        keys: Keys | None = None,
        tls: TLS | None = None,
        python: str | Path | None = None,
        model_control: str = "explicit",
        cwd: str | Path | None = None,
    ):
        self.repository = Path(repository).resolve()
        # Where tritonserver reads the models: the repository itself, or a published copy of it
        # (maas publish: s3://...), whose configs are those of `repository` (probes, checks).
        self.served_from = served_from or str(self.repository)
        self.env = dict(env or {})  # on top of ours: e.g. AWS_* for an S3 repository
        self.keys = keys or Keys()
        self.tls = tls  # gRPC over TLS (maas's own probes and reloads go over plain HTTP)
        # More backends (onnxruntime/) beside the wheel's Python backend; see the module doc.
        self.backend_dir = Path(backend_dir).resolve() if backend_dir else None
        if self.backend_dir is not None and not backends_in(self.backend_dir):
            raise ServerError(f"--backend-dir {backend_dir}: no backend folders in it")
        self.config_name: str | None = None  # set by command(): PYTHON_CONFIG or None
        self.ports = ports or Ports()
        self.echo = echo  # print the server's log as it comes
        self.extra_args = tuple(extra_args)
        self.start_timeout = start_timeout
        self.process: subprocess.Popen | None = None
        self.log: collections.deque[str] = collections.deque(maxlen=2000)
        self.gpu = has_gpu()
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._reader: threading.Thread | None = None
        self._signal: int | None = None  # SIGINT/SIGTERM received while `run` is in charge
        # Self-healing (maas.health): a watchdog that checks every pipeline and reloads what
        # died, and optionally GET /health on `health_port` for load balancers and probes.
        self.heal = heal or health_port is not None
        self.host = host  # HTTP, gRPC, metrics and health listen here: loopback unless asked
        self.health_port = health_port
        self.check_interval = check_interval
        # How long Triton drains in-flight requests on SIGTERM. Ours take milliseconds; and a
        # model whose stub died never finishes unloading, so Triton would wait all of it
        # (its default: 30 s) and exit with "failed to stop server".
        self.exit_timeout_s = exit_timeout_s
        self.watchdog = None
        self._endpoint = None
        self._restarting = threading.Event()
        self._stopping = False
        # The stubs' Python (default: this one), "explicit" model control (every model loaded
        # at start; the watchdog reloads through the API) or "none" (Triton's default), and
        # the server's working folder: what a test needs to serve as a stock container does.
        self.python = StubPython.of(python)
        self.model_control = model_control
        self.cwd = cwd

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

    def command(self) -> list[str]:
        binary, backends = find_tritonserver()
        cmd = [
            str(binary),
            f"--model-repository={self.served_from}",
            f"--http-port={self.ports.http}",
            f"--grpc-port={self.ports.grpc}",
            f"--metrics-port={self.ports.metrics}",
            *(f"--{kind}-address={self.host}" for kind in ("http", "grpc", "metrics")),
            "--log-verbose=0",
            # Explicit model control, everything loaded at start as before: a model whose
            # stub died can be reloaded through the API (maas.health), and versions rolled.
            *(
                ("--model-control-mode=explicit", "--load-model=*")
                if self.model_control == "explicit"
                else ()
            ),
            f"--exit-timeout-secs={self.exit_timeout_s}",
            *(() if self.gpu else CPU_ONLY_ARGS),
            *self.keys.args(),
            *(self.tls.grpc_args() if self.tls else ()),
        ]
        if backends is not None:  # the wheel's: ours to lay out, with any extra backends
            assert self._tmp is not None
            folder = python_backend_dir(backends, Path(self._tmp.name), self.python.version)
            for name in sorted(backends_in(self.backend_dir) if self.backend_dir else ()):
                if name != "python":  # the wheel's, with this interpreter's stub
                    (folder / name).symlink_to(self.backend_dir / name, target_is_directory=True)
            cmd.append(f"--backend-directory={folder}")
        elif self.backend_dir is not None:  # a container's tritonserver: the folder as given
            folder = self.backend_dir
            cmd.append(f"--backend-directory={folder}")
        else:  # a container's own backends folder, as it is
            folder = binary.parent.parent / "backends"
        self.config_name = config_name(self.repository, backends_in(folder))
        if self.config_name:
            cmd.append(f"--model-config-name={self.config_name}")
        return [*cmd, *self.extra_args]

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
            if self.heal:
                from maas.health import HealthEndpoint, Watchdog

                printer = print if self.echo else (lambda _text: None)
                self.watchdog = Watchdog(self, self.check_interval, on_event=printer).start()
                if self.health_port is not None:
                    self._endpoint = HealthEndpoint(
                        self.watchdog, self.host, self.health_port,
                        stale_after=5 * self.check_interval,
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
                _terminate(proc, timeout=30.0)
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
        env = self.python.environment({**os.environ, **self.env})
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
                cwd=self.cwd,
            )
        except OSError as e:
            raise ServerError(f"cannot start tritonserver: {e}") from None
        self._reader = threading.Thread(target=self._read_log, daemon=True)
        self._reader.start()
        if wait:
            self._wait_ready()

    def _read_log(self) -> None:
        assert self.process is not None and self.process.stdout is not None
        hidden = False
        for line in self.process.stdout:
            self.log.append(line.rstrip("\n"))
            if not self.echo:
                continue
            if not self.gpu and CPU_ONLY_NOISE.search(line):
                if not hidden:
                    print("[maas] no GPU here: Triton's CUDA start-up messages are expected "
                          "on a CPU-only machine and are not shown", flush=True)  # fmt: skip
                    hidden = True
                continue
            print(line, end="", flush=True)

    def error_lines(self) -> str:
        """Triton's error lines (E...), or the log's tail when there are none; without a GPU,
        not the CUDA messages every CPU-only start prints."""
        lines = [ln for ln in self.log if self.gpu or not CPU_ONLY_NOISE.search(ln)]
        errors = [ln for ln in lines if ln[:1] == "E" or "error" in ln.lower()]
        return "\n".join(errors or lines[-30:])

    def _wait_ready(self) -> None:
        import tritonclient.http as httpclient

        deadline = time.monotonic() + self.start_timeout
        client = httpclient.InferenceServerClient(self.http_url)
        try:
            while True:
                if self._signal is not None:
                    raise Interrupted(self._signal)
                if self.process.poll() is not None:
                    self._reader.join(timeout=5)
                    raise ServerError(
                        f"tritonserver exited with code {self.process.returncode}:\n"
                        f"{self.error_lines()}"
                    )
                try:
                    if client.is_server_ready():
                        break
                except Exception:  # not listening yet
                    pass
                if time.monotonic() > deadline:
                    raise ServerError(
                        f"tritonserver not ready after {self.start_timeout:.0f} s:\n"
                        f"{self.error_lines()}"
                    )
                time.sleep(0.25)
            self._probe(client)
        finally:
            client.close()

    def _probe(self, client) -> None:
        """Ready only once a request has gone through every pipeline: /v2/health/ready says
        200 even when a Python stub cannot import its modules (see maas.probe)."""
        from maas.probe import Probes

        for error in Probes.of(self.repository, self.keys.headers).run(client).values():
            if error is not None:
                raise ServerError(f"tritonserver is up but {error}\n{self.error_lines()}")

    def stop(self, timeout: float = 30.0) -> int | None:
        """SIGTERM (Triton drains in-flight requests), SIGKILL if it hangs; returns its code."""
        self._stopping = True
        if self._endpoint is not None:
            self._endpoint.stop()
            self._endpoint = None
        if self.watchdog is not None:
            self.watchdog.stop()
            self.watchdog = None
        proc, self.process = self.process, None
        code = None
        if proc is not None:
            code = _terminate(proc, timeout)
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
                if self.process in (None, proc):
                    return code
        except ServerError:
            if self._signal is None:
                raise
            return -self._signal  # a stop asked for during start-up, not a failure
        finally:
            self.stop()
            for s, handler in old.items():
                signal.signal(s, handler)

    def _unclean(self, code: int) -> str:
        return (
            f"[maas] tritonserver did not stop cleanly in {self.exit_timeout_s} s (exit code "
            f"{code}: a model it could not unload, such as one whose stub died); its processes "
            f"have been stopped"
        )

    def __enter__(self) -> TritonServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
