"""maas publish, fleet, pod-guard, rollout, rollback, tune: operating served repositories."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from maas import contract
from maas.cli import common
from maas.errors import OptionError, ServerError
from maas.files import atomic_write


def publish_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="s3://BUCKET[/PREFIX]")
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--dry-run", action="store_true", help="list what would change, send nothing")


def publish(args) -> int:
    from tqdm import tqdm

    from maas.publish import S3Location, endpoint_url, s3_client
    from maas.publish import publish as upload

    where = S3Location.parse(args.url)
    with tqdm(desc="publishing", unit="file", disable=args.dry_run) as bar:
        done = upload(args.repository, where, s3_client(), args.dry_run, lambda _: bar.update())
    print(done.describe() if args.dry_run else done.describe().splitlines()[-1])
    if not args.dry_run:
        print(f"serve it: tritonserver --model-repository={where.triton_url(endpoint_url())}")
    return 0


def fleet_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["up", "status", "down"])
    p.add_argument("--replicas", type=int, default=2)
    common.paths(p)
    p.add_argument("--served-from", help="the published copy (s3://...) the replicas read")
    p.add_argument("--no-build", action="store_true", help="serve the repository as it is")
    p.add_argument("--host", default="127.0.0.1", help="address nginx listens on")
    p.add_argument("--http-port", type=int, default=8000, help="nginx's HTTP port")
    p.add_argument("--grpc-port", type=int, default=8001, help="nginx's gRPC port")
    p.add_argument("--state-dir", type=Path, default=Path(contract.FLEET_STATE_DIR))
    common.keys(p)
    p.add_argument("--tenants", type=Path, help="who may call inference, at what rate and "
                   "priority (JSON, mode 0600: maas.tenants); reread on change")  # fmt: skip
    common.server_tls(p, "nginx's HTTP (HTTPS) and gRPC ports")
    common.inflight(p)


def fleet(args) -> int:
    from maas import fleet as fleets

    if args.action == "status":
        state = fleets.status(args.state_dir)
        if state is None:
            raise ServerError("no fleet is up")
        print(json.dumps(state, indent=2))
        ready = state["balancer"]["ready"] and all(r["ready"] for r in state["replicas"])
        return 0 if ready else 1
    if args.action == "down":
        if not fleets.down(args.state_dir):
            raise ServerError("no fleet is up")
        print("maas fleet: stopped")
        return 0
    import signal
    import threading

    from maas.access import Keys
    from maas.backends import backend_dir_default
    from maas.workspace import Paths, ensure_built

    if fleets.status(args.state_dir) is not None:
        raise ServerError(f"a fleet is already up (see {args.state_dir}/fleet.json)")
    if not args.no_build and args.served_from is None:
        ensure_built(Paths(args.artifacts, args.repository), data_dir=args.data_dir)
    keys = Keys.from_env(args.admin_key_file, args.client_key_file)
    lb = fleets.Balancer(args.host, args.http_port, args.grpc_port, tls=common.server_tls_of(args),
                         inflight_per_replica=args.inflight)  # fmt: skip
    stopping = threading.Event()
    old = {s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    group = fleets.Fleet(
        args.repository, args.replicas, served_from=args.served_from, balancer=lb,
        state_dir=args.state_dir, backend_dir=backend_dir_default(), keys=keys,
        tenants_file=args.tenants,
    )  # fmt: skip
    try:
        group.start()
        print("[maas fleet] Ctrl-C (or maas fleet down) stops it", flush=True)
        while not stopping.wait(0.5):
            group.supervise_once()
    finally:
        group.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0


def pod_guard_arguments(p: argparse.ArgumentParser) -> None:
    tenants = "who may call inference, at what rate and priority (JSON, mode 0600: maas.tenants)"
    p.add_argument("--tenants", type=Path, help=f"{tenants}; none: deploy/k8s/guard.conf's")
    p.add_argument("--out", type=Path, required=True, help="the nginx.conf to write (mode 0600)")
    common.inflight(p)


def pod_guard(args) -> int:
    """The Kubernetes pod's guard config (deploy/k8s/triton.yaml): with tenants it holds their
    keys, so it goes into the maas-guard-conf Secret; the guard reloads when it changes."""
    from maas.balancer import pod_config
    from maas.tenants import Tenants

    if not args.out.parent.is_dir():
        raise OptionError(f"--out {args.out}: no folder {args.out.parent}")
    text = pod_config(Tenants.load(args.tenants) if args.tenants else None, args.inflight)
    atomic_write(args.out, lambda f: f.write(text.encode()))  # 0600 from its creation: keys
    print(f"maas pod-guard: wrote {args.out}")
    return 0


def rollout_arguments(p: argparse.ArgumentParser, rollback: bool = False) -> None:
    p.add_argument("model", help="the served model to move (a core model, e.g. classifier)")
    if not rollback:
        p.add_argument("--to", type=int, required=True, help="the version to serve")
    p.add_argument(
        "--url", action="append", default=[],
        help="a replica's HTTP address, http:// or https:// (repeat); default: the fleet's "
        "replicas",
    )  # fmt: skip
    p.add_argument(
        "--repository", type=Path, default=Path("model_repository"),
        help="the built repository (its probe requests, and its versions' records)",
    )  # fmt: skip
    p.add_argument("--state-dir", type=Path, default=Path(contract.FLEET_STATE_DIR))
    p.add_argument(
        "--admin-key-file", type=Path,
        help="the replicas' admin key (default: the fleet's, in --state-dir, or $MAAS_ADMIN_KEY)",
    )  # fmt: skip


def rollout(args) -> int:
    from maas import fleet as fleets
    from maas.access import Keys
    from maas.rollout import rollout as roll

    history = args.state_dir / "rollouts.json"
    done = json.loads(history.read_text()) if history.is_file() else {}
    if args.command == "rollback":
        if args.model not in done:
            raise OptionError(f"no rollout of {args.model} on record in {history}")
        to = max(done[args.model]["from"])
    else:
        to = args.to
    addresses = list(args.url)  # https:// kept: the admin key goes over TLS there
    if not addresses:
        state = fleets.status(args.state_dir)
        if state is None:
            raise OptionError("no fleet is up; name the replicas with --url")
        addresses = [r["http"] for r in state["replicas"]]
    key_file = args.admin_key_file or args.state_dir / fleets.ADMIN_KEY_FILE
    keys = Keys.from_env(key_file if key_file.is_file() else None)
    steps = roll(addresses, args.model, to, args.repository, keys.headers)
    before = sorted({v for s in steps for v in s.before})
    done[args.model] = {"from": before, "to": to, "at": round(time.time())}
    text = json.dumps(done, indent=2) + "\n"
    atomic_write(history, lambda f: f.write(text.encode()))
    return 0


def tune(argv: list[str]) -> int:
    from maas.benchmarks.tune import main as search

    return 0 if search(argv) is not None else 1


COMMANDS = {
    "publish": (publish_arguments, publish),
    "fleet": (fleet_arguments, fleet),
    "pod-guard": (pod_guard_arguments, pod_guard),
    "rollout": (rollout_arguments, rollout),
    "rollback": (lambda p: rollout_arguments(p, rollback=True), rollout),
}
