"""maas serve, demo, health: a tritonserver on the repository, and the checks of one."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from maas.cli import common
from maas.errors import ServerError


def exposure_warning(host: str) -> str | None:
    """What `maas serve --host` says when tritonserver's own HTTP port leaves loopback: one
    malformed request can abort tritonserver 2.51 there (docs/security.md: the guard)."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return None
    return (
        f"warning: tritonserver's HTTP port listens on {host}. One malformed request (a shape "
        "far larger than its body) aborts tritonserver 2.51 through HTTP; for callers you do "
        "not trust, serve through `maas fleet up` (its nginx guards HTTP inference) or gRPC only."
    )


def serve_arguments(p: argparse.ArgumentParser) -> None:
    from maas.backends import BACKEND_DIR_ENV, backend_dir_default
    from maas.server_config import SERVE_CACHE_MB

    common.paths(p)
    common.ports(p)
    p.add_argument("--no-build", action="store_true", help="serve the repository as it is")
    p.add_argument("--quiet", action="store_true", help="do not echo the server's log")
    p.add_argument(
        "--no-heal", action="store_true",
        help="no watchdog: a model whose Python stub died stays broken (see maas.health)",
    )  # fmt: skip
    p.add_argument("--check-interval", type=float, default=2.0, help="seconds between checks")
    common.keys(p)
    common.server_tls(p, "gRPC (tritonserver's HTTP has none: HTTPS is a balancer's)")
    p.add_argument("--health-port", type=int, help="serve GET /health on this port")
    p.add_argument(
        "--cache-mb", type=int, default=SERVE_CACHE_MB,
        help="Triton's response cache for repeated requests to the ensembles, in MB (0: none)",
    )  # fmt: skip
    p.add_argument(
        "--host", default="127.0.0.1",
        help="address the server (HTTP, gRPC, metrics, health) listens on; 0.0.0.0: all",
    )  # fmt: skip
    p.add_argument(
        "--backend-dir", type=Path, default=backend_dir_default(),
        help="a folder of more Triton backends (e.g. onnxruntime/) to use beside the Python "
        f"backend; with onnxruntime the core models run natively (default: ${BACKEND_DIR_ENV})",
    )  # fmt: skip


def serve(args) -> int:
    from maas.access import Keys
    from maas.serve import Healing, ServerConfig, TritonServer
    from maas.workspace import Paths, ensure_built

    paths = Paths(args.artifacts, args.repository)
    config = ServerConfig(
        ports=common.ports_of(args),
        host=args.host,
        backend_dir=args.backend_dir,
        keys=Keys.from_env(args.admin_key_file, args.client_key_file),
        tls=common.server_tls_of(args),
        cache_mb=args.cache_mb,
        echo=not args.quiet,
        healing=None
        if args.no_heal
        else Healing(interval=args.check_interval, health_port=args.health_port),
    )
    if (warning := exposure_warning(args.host)) is not None:
        print(f"[maas] {warning}", file=sys.stderr)
    if not args.no_build:
        ensure_built(paths, data_dir=args.data_dir)
    server = TritonServer(paths.repository, config)

    def announce(server: TritonServer) -> None:
        p = server.ports
        grpc = f"grpc://127.0.0.1:{p.grpc}"
        lines = [
            f"\n[maas] ready: HTTP {p.http}, gRPC {p.grpc}, metrics {p.metrics} (a probe request "
            f"went through every ensemble in {paths.repository}; tritonserver pid "
            f"{server.process.pid}; core models on "
            f"{'the Python backend' if server.config_name else 'the onnxruntime backend'}; "
            "model control needs the admin key"
            f"{', inference the client key' if server.config.keys.client else ''})",
            f"[maas] try: .venv/bin/maas classify {paths.samples}/* --url {grpc}",
            f"[maas]  or: .venv/bin/maas forecast $(seq 315 0.1 320) --url {grpc}",
        ]
        if args.health_port:
            lines.append(f"[maas] health: http://{args.host}:{args.health_port}/health")
        print("\n".join([*lines, "[maas] Ctrl-C stops the server"]), flush=True)

    code = server.run(on_ready=announce)
    return 0 if code in (0, -2, -15) else code


def demo_arguments(p: argparse.ArgumentParser) -> None:
    common.paths(p)
    common.ports(p)


def demo(args) -> int:
    from maas.demo import run_demo
    from maas.workspace import Paths

    paths = Paths(args.artifacts, args.repository)
    return run_demo(paths, common.ports_of(args), data_dir=args.data_dir)


def health_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    common.client(p, out=False, tls=False)


def health(args) -> int:
    """One request through every served pipeline; exit 0 when all answer (an exec probe)."""
    from maas import contract
    from maas.clients.client import parse_url
    from maas.health import check
    from maas.probe import Probes

    scheme, address = parse_url(args.url, args.protocol)
    if scheme != "http":
        raise ServerError("give the server's HTTP URL")
    headers = contract.client_key_headers("http")  # where the server makes inference need one
    report = check(address, Probes.of(args.repository, headers))
    for name, error in report.failing.items():
        print(f"{name}: {error.splitlines()[0]}", file=sys.stderr)
    print(json.dumps(report.as_dict()))
    return 0 if report.ok else 1


COMMANDS = {
    "serve": (serve_arguments, serve),
    "demo": (demo_arguments, demo),
    "health": (health_arguments, health),
}
