"""What a tritonserver is started with (ServerConfig, from which maas.serve derives its command
line) and how it is kept serving (Healing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from maas.access import TLS, Keys, Ports

SERVE_CACHE_MB = 64  # `maas serve --cache-mb`, the fleet's replicas, deploy/k8s


@dataclass(frozen=True)
class Healing:
    """The watchdog (maas.health): every `interval` seconds, a request through every pipeline
    and a count of every step's processes; what died is reloaded. With a `health_port`, GET
    /health there for load balancers and probes (0: a port the OS picks when it binds,
    `TritonServer.health_endpoint.port`)."""

    interval: float = 2.0
    health_port: int | None = None
    # tritonserver itself died (a crash, the OOM killer): started again on the same ports, at
    # most this many times in a minute; beyond, `run` gives up and returns its exit code.
    restarts_per_minute: int = 3


@dataclass(frozen=True)
class ServerConfig:
    """What a tritonserver is started with; its command line comes from this."""

    ports: Ports = field(default_factory=Ports.free)
    host: str = "127.0.0.1"  # HTTP, gRPC, metrics and health listen here: loopback unless asked
    backend_dir: str | Path | None = None  # more backends beside the wheel's Python backend
    python: str | Path | None = None  # the stubs' Python: this interpreter by default
    # "explicit": every model loaded at start, and a model whose stub died can be reloaded
    # through the API (maas.health), versions rolled (maas.rollout); "none": Triton's default.
    model_control: str = "explicit"
    cwd: str | Path | None = None  # the server's working folder
    # Where the server reads the models: the repository itself, or a published copy of it
    # (maas publish: s3://...), whose configs are the repository's (probes, checks).
    served_from: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)  # on top of ours: AWS_* for S3, say
    keys: Keys = field(default_factory=Keys)
    tls: TLS | None = None  # gRPC over TLS (maas's own probes and reloads go over HTTP)
    healing: Healing | None = None  # no watchdog unless given
    echo: bool = False  # print the server's log as it comes
    start_timeout: float = 180.0
    # How long Triton drains in-flight requests on SIGTERM. Ours take milliseconds; and a
    # model whose stub died never finishes unloading, so Triton would wait all of it (its
    # default: 30 s) and exit with "failed to stop server".
    exit_timeout_s: int = 5
    # False: `stop` kills the server at once (SIGKILL to its group, then the Python backend's
    # shared memory removed) instead of SIGTERM, for a server with nothing in flight (a test's,
    # a benchmark trial's). Triton's own unload takes 3-4 s: its stubs exit ~1 s each, one
    # instance after another, and it looks again once a second.
    drain: bool = True
    # Triton's local response cache for the pipelines whose configs enable it (every ensemble:
    # ServingOptions.response_cache), in MB; 0: none, and those configs load without one.
    # None by default, so that a benchmark measures the steps; `maas serve` and the fleet
    # ask for SERVE_CACHE_MB.
    cache_mb: int = 0
    extra_args: tuple[str, ...] = ()
