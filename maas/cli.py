"""The `maas` command: a subcommand per stage and one per served pipeline's task.

FAMILY is image_classifier (the default), forecaster, vae or gan (see maas.families).

    maas train [FAMILY] [--epochs N ...]         -> artifacts/[FAMILY/]checkpoint.pt
    maas export [FAMILY]                         -> artifacts/[FAMILY/]model.onnx (parity-gated)
    maas build [FAMILY] [--variant V ...]        -> model_repository/ (no FAMILY: what is missing)
    maas serve [--http-port 8000 ...]            builds what is missing, runs tritonserver
    maas classify IMAGE... [--url URL] [--protocol http|grpc] [--top-k K]
    maas forecast VALUE... | --file F [--horizon H] [--url URL]
    maas generate DIGIT [--seed S] [--count N] [--out DIR]     the GAN
    maas sample [--seed S] [--count N] [--out DIR]             the VAE, from its prior
    maas encode IMAGE... | maas decode [--out DIR]             the VAE, through its code
    maas reconstruct IMAGE... [--out DIR]
    maas demo                                    the pipeline, then classify over HTTP and gRPC
    maas tune [--p99-budget MS] [--apply DIR]    search serving configs on this machine
    maas publish s3://BUCKET/PREFIX [--dry-run]  the built repository to S3 (changes only)
    maas fleet up|status|down [--replicas N]     replicas behind nginx (see maas.fleet)
    maas rollout MODEL --to N | maas rollback MODEL   a version change, replica by replica

Each subcommand's --help lists its options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

from maas import contract as C
from maas import families


def _add_ports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)


def _add_paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"), help="checkpoint, ONNX")
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--data-dir", help="CIFAR-10 folder/tarball for a first training run")


def _ports(args):
    from maas.serve import Ports

    return Ports(args.http_port, args.grpc_port, args.metrics_port)


def cmd_train(args) -> int:
    family = families.get(args.family)
    given = {k: v for k, v in vars(args).items() if k not in ("family", "func")}
    given["out"] = args.out or str(family.paths(Path("artifacts"))[0])
    try:
        families.train(family, **given)
    except FileNotFoundError as e:  # data, or the classifier that judges the generators
        print(f"maas train: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_export(args) -> int:
    family = families.get(args.family)
    checkpoint, onnx = family.paths(Path("artifacts"))
    families.resolve(family.export)(
        args.checkpoint or checkpoint, args.out or onnx, tolerance=args.tolerance
    )
    return 0


def serving_options(args):
    from maas.build.configs import ServingOptions

    return ServingOptions(
        max_batch_size=args.max_batch_size,
        default_top_k=args.top_k,
        max_pixels=args.max_pixels,
        serve_versions=args.serve_versions,
        queue_delay_us=args.queue_delay_us,
        preferred_batch_size=args.preferred_batch_size,
        preprocess_instances=args.preprocess_instances,
        classifier_instances=args.classifier_instances,
        postprocess_instances=args.postprocess_instances,
        ort_intra_op_threads=args.intra_op_threads,
    )


def cmd_build(args) -> int:
    from maas.build.gate import GateError
    from maas.build.repository import BuildOptions, build_repository
    from maas.build.tensorrt import Profile, TensorRTUnavailable

    if args.family is None:  # whatever is missing, every family, on the defaults
        from maas.pipeline import Paths, ensure_built

        if args.variant != "auto" or args.checkpoint or args.onnx:
            print(
                "maas build: --variant, --checkpoint and --onnx apply to one family: name it, "
                f"e.g. maas build image_classifier --variant {args.variant}",
                file=sys.stderr,
            )
            return 1

        ensure_built(Paths(Path("artifacts"), args.repository))
        return 0
    if args.labels is not None:  # a user's own ONNX, served through the family's steps
        return _build_own(args)
    checkpoint, onnx = families.get(args.family).paths(Path("artifacts"))
    try:
        build = BuildOptions(
            variant=args.variant,
            tolerance=args.tolerance,
            keep_versions=args.keep_versions,
            calibration_images=args.calibration_images,
            profile=Profile(args.trt_min_batch, args.trt_opt_batch, args.trt_max_batch),
            workspace_bytes=args.workspace_mb << 20,
        )
        build_repository(
            args.checkpoint or checkpoint, args.onnx or onnx, args.repository,
            serving_options(args), build, family=args.family,
        )  # fmt: skip
    except (GateError, TensorRTUnavailable, ValueError, FileNotFoundError) as e:
        print(f"maas build: {e}", file=sys.stderr)
        return 1
    return 0


def _build_own(args) -> int:
    from maas.build.gate import GateError
    from maas.build.own_model import ContractError, Scaling, build_own_onnx
    from maas.build.repository import BuildOptions

    if args.family != "image_classifier" or args.onnx is None:
        print("maas build: --labels goes with image_classifier --onnx FILE", file=sys.stderr)
        return 1
    try:
        build_own_onnx(
            args.onnx, args.labels, args.repository, args.name or args.onnx.stem,
            Scaling(args.scale, tuple(args.mean), tuple(args.std)), serving_options(args),
            BuildOptions(variant=args.variant, tolerance=args.tolerance),
            layout=args.layout, outputs=args.outputs,
            size=tuple(args.size) if args.size else None,
        )  # fmt: skip
    except (ContractError, GateError, FileNotFoundError, ValueError) as e:
        print(f"maas build: {e}", file=sys.stderr)
        return 1
    return 0


def exposure_warning(host: str) -> str | None:
    """What `maas serve --host` says when tritonserver's own HTTP port leaves loopback: one
    malformed request can abort tritonserver 2.51 there (README, Operate: the balancer's
    guard)."""
    if host in ("127.0.0.1", "localhost", "::1"):
        return None
    return (
        f"[maas] warning: tritonserver's HTTP port listens on {host}. One malformed request "
        "(a shape far larger than its body) aborts tritonserver 2.51 through HTTP; for callers "
        "you do not trust, serve through `maas fleet up` (its nginx guards HTTP inference) or "
        "gRPC only."
    )


def cmd_serve(args) -> int:
    from maas.pipeline import Paths, ensure_built
    from maas.serve import Keys, ServerError, TritonServer

    paths = Paths(args.artifacts, args.repository)
    try:
        keys = Keys.from_env(args.admin_key_file, args.client_key_file)
        tls = _tls(args)
    except (OSError, ServerError) as e:
        print(f"maas serve: {e}", file=sys.stderr)
        return 1
    if (warning := exposure_warning(args.host)) is not None:
        print(warning, file=sys.stderr)
    if not args.no_build:
        ensure_built(paths, data_dir=args.data_dir)
    server = TritonServer(
        paths.repository, _ports(args), echo=not args.quiet, heal=not args.no_heal,
        host=args.host, health_port=args.health_port, check_interval=args.check_interval,
        backend_dir=args.backend_dir, keys=keys, tls=tls,
    )  # fmt: skip

    def announce(server: TritonServer) -> None:
        p = server.ports
        print(
            f"\n[maas] ready: HTTP {p.http}, gRPC {p.grpc}, metrics {p.metrics} "
            f"(a probe request went through every ensemble in {paths.repository}; "
            f"tritonserver pid {server.process.pid}; core models on "
            f"{'the Python backend' if server.config_name else 'the onnxruntime backend'}; "
            f"model control needs the admin key"
            f"{', inference the client key' if server.keys.client else ''})\n"
            f"[maas] try: .venv/bin/maas classify {paths.samples}/* "
            f"--url grpc://127.0.0.1:{p.grpc}\n"
            f"[maas]  or: .venv/bin/maas forecast $(seq 315 0.1 320) --url grpc://127.0.0.1:{p.grpc}\n"
            + (
                f"[maas] health: http://{args.host}:{args.health_port}/health\n"
                if args.health_port
                else ""
            )
            + "[maas] Ctrl-C stops the server",
            flush=True,
        )

    try:
        code = server.run(on_ready=announce)
    except ServerError as e:
        print(f"maas serve: {e}", file=sys.stderr)
        return 1
    return 0 if code in (0, -2, -15) else code


def cmd_classify(args) -> int:
    """Classify every readable image; each file that fails is named on stderr, and the exit
    code is 1 if any did, after the others were answered."""
    from maas.clients.client import Client
    from maas.clients.errors import ClientError, InvalidInput

    readable, failed = [], 0
    for path in args.images:
        try:
            readable.append((path, path.read_bytes()))
        except OSError as e:
            print(f"maas classify: {path}: {e.strerror or e}", file=sys.stderr)
            failed += 1
    try:
        with Client(args.url, args.protocol, tls=_client_tls(args)) as client:
            outcomes = client.classify_each([data for _, data in readable], top_k=args.top_k)
    except (ClientError, ValueError) as e:  # the server, not an image: nothing can be answered
        print(f"maas classify: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for (path, _), result in zip(readable, outcomes, strict=True):
        if isinstance(result, InvalidInput):
            print(f"maas classify: {path}: {result}", file=sys.stderr)
            failed += 1
        elif args.json:
            preds = [dataclasses.asdict(p) for p in result.predictions]
            print(json.dumps({"image": str(path), "predictions": preds}), flush=True)
        else:
            top = ", ".join(f"{p.label} ({p.score:.3f})" for p in result.predictions)
            print(f"{path}: {top}", flush=True)
    return 1 if failed else 0


def cmd_forecast(args) -> int:
    """Forecast one series: values given on the command line or read from a file."""
    from maas.clients.client import Client
    from maas.clients.errors import ClientError

    try:
        text = args.file.read_text() if args.file else " ".join(args.values)
        history = [float(v) for v in text.replace(",", " ").split()]
    except (OSError, ValueError) as e:
        print(f"maas forecast: {e}", file=sys.stderr)
        return 1
    try:
        with Client(args.url, args.protocol, tls=_client_tls(args)) as client:
            answer = client.forecast(history, args.horizon)
    except (ClientError, ValueError) as e:
        print(f"maas forecast: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(dataclasses.asdict(answer)))
        return 0
    for step, (value, low, high) in enumerate(zip(*dataclasses.astuple(answer), strict=True), 1):
        print(f"+{step}: {value:.3f}  [{low:.3f}, {high:.3f}]")
    return 0


def _client_call(verb: str, args, call):
    """call(client) with a client for --url/--protocol; errors -> (None, message on stderr)."""
    from maas.clients.client import Client
    from maas.clients.errors import ClientError

    try:
        with Client(args.url, args.protocol, tls=_client_tls(args)) as client:
            return call(client)
    except (ClientError, OSError, ValueError) as e:
        print(f"maas {verb}: {type(e).__name__}: {e}", file=sys.stderr)
        return None


def _save_pngs(files: list[bytes], out: Path, stem: str) -> int:
    """Write each PNG as out/stem_<i>.png (whole files only: a temporary name, then renamed)
    and print the paths."""
    import os

    out.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(files):
        path = out / f"{stem}_{i:02d}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        print(path)
    return 0


def cmd_generate(args) -> int:
    """The GAN: COUNT images of DIGIT from SEED."""
    files = _client_call("generate", args, lambda c: c.generate(args.digit, args.seed, args.count))
    if files is None:
        return 1
    return _save_pngs(files, args.out, f"digit{args.digit}_seed{args.seed}")


def cmd_sample(args) -> int:
    """The VAE: COUNT images drawn from its prior with SEED."""
    files = _client_call("sample", args, lambda c: c.sample(args.seed, args.count))
    return 1 if files is None else _save_pngs(files, args.out, f"vae_seed{args.seed}")


def cmd_reconstruct(args) -> int:
    files = _client_call("reconstruct", args, lambda c: c.reconstruct(args.images))
    if files is None:
        return 1
    for image, data in zip(args.images, files, strict=True):
        _save_pngs([data], args.out, f"{Path(image).stem}_reconstructed")
    return 0


def cmd_encode(args) -> int:
    """One line per image: its latent code, numbers separated by spaces (what decode reads)."""
    codes = _client_call("encode", args, lambda c: c.encode(args.images))
    if codes is None:
        return 1
    for row in codes:
        print(" ".join(f"{v:.6g}" for v in row))
    return 0


def cmd_decode(args) -> int:
    import numpy as np

    try:
        text = args.file.read_text() if args.file else sys.stdin.read()
        rows = [[float(v) for v in line.split()] for line in text.splitlines() if line.strip()]
        latents = np.array(rows, np.float32)
    except (OSError, ValueError) as e:
        print(f"maas decode: latent rows of equal length expected: {e}", file=sys.stderr)
        return 1
    files = _client_call("decode", args, lambda c: c.decode(latents))
    return 1 if files is None else _save_pngs(files, args.out, "decoded")


def cmd_publish(args) -> int:
    from tqdm import tqdm

    from maas.publish import S3Location, endpoint_url, publish, s3_client

    try:
        where = S3Location.parse(args.url)
        client = s3_client()
        with tqdm(desc="publishing", unit="file", disable=args.dry_run) as bar:
            done = publish(args.repository, where, client, args.dry_run, lambda _: bar.update())
    except (ValueError, FileNotFoundError) as e:
        print(f"maas publish: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # botocore's: no credentials, no bucket, endpoint unreachable
        print(f"maas publish: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    print(done.describe() if args.dry_run else done.describe().splitlines()[-1])
    if not args.dry_run:
        print(f"serve it: tritonserver --model-repository={where.triton_url(endpoint_url())}")
    return 0


def _add_keys(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--admin-key-file", type=Path,
        help="the key for model control, repository, shared memory, trace, logging (default: "
        "$MAAS_ADMIN_KEY, else a random one for this run: those APIs closed to others)",
    )  # fmt: skip
    p.add_argument(
        "--client-key-file", type=Path,
        help="make inference need this key (default: $MAAS_CLIENT_KEY, else open)",
    )  # fmt: skip


def _add_tls(p: argparse.ArgumentParser, where: str) -> None:
    p.add_argument("--tls-cert", type=Path, help=f"server certificate (PEM): TLS on {where}")
    p.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    p.add_argument(
        "--tls-client-ca", type=Path,
        help="mutual TLS: clients must present a certificate this CA signed",
    )  # fmt: skip


def _tls(args):
    """serve.TLS from --tls-*, None without them; a missing half is an error."""
    from maas.serve import TLS, ServerError

    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise ServerError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise ServerError("TLS needs both --tls-cert and --tls-key")
    return TLS(args.tls_cert, args.tls_key, args.tls_client_ca)


def _client_tls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tls-ca", type=Path, help="TLS: the CA of the server's certificate")
    p.add_argument("--tls-cert", type=Path, help="mutual TLS: this client's certificate")
    p.add_argument("--tls-key", type=Path, help="mutual TLS: its private key")


def _client_tls(args):
    from maas.clients.client import TLS

    if args.tls_ca is None and args.tls_cert is None:
        return None
    return TLS(args.tls_ca, args.tls_cert, args.tls_key)


def _publish_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("url", help="s3://BUCKET[/PREFIX]")
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--dry-run", action="store_true", help="list what would change, send nothing")


def cmd_fleet(args) -> int:
    from maas import fleet

    if args.action == "status":
        state = fleet.status(args.state_dir)
        if state is None:
            print("maas fleet: no fleet is up", file=sys.stderr)
            return 1
        print(json.dumps(state, indent=2))
        return 0 if state["balancer"]["ready"] and all(r["ready"] for r in state["replicas"]) else 1
    if args.action == "down":
        if not fleet.down(args.state_dir):
            print("maas fleet: no fleet is up", file=sys.stderr)
            return 1
        print("maas fleet: stopped")
        return 0
    import signal
    import threading

    from maas.pipeline import Paths, ensure_built
    from maas.serve import Keys, ServerError, backend_dir_default

    if fleet.status(args.state_dir) is not None:
        print(
            f"maas fleet: a fleet is already up (see {args.state_dir}/fleet.json)", file=sys.stderr
        )
        return 1
    if not args.no_build and args.served_from is None:
        ensure_built(Paths(args.artifacts, args.repository), data_dir=args.data_dir)
    try:
        keys = Keys.from_env(args.admin_key_file, args.client_key_file)
        lb = fleet.Balancer(args.host, args.http_port, args.grpc_port, tls=_tls(args))
    except (OSError, ServerError) as e:
        print(f"maas fleet: {e}", file=sys.stderr)
        return 1
    stopping = threading.Event()
    old = {s: signal.signal(s, lambda *_: stopping.set()) for s in (signal.SIGINT, signal.SIGTERM)}
    group = fleet.Fleet(
        args.repository, args.replicas, served_from=args.served_from, balancer=lb,
        state_dir=args.state_dir, backend_dir=backend_dir_default(), keys=keys,
    )  # fmt: skip
    try:
        group.start()
        print("[maas fleet] Ctrl-C (or maas fleet down) stops it", flush=True)
        while not stopping.wait(0.5):
            group.supervise_once()
    except ServerError as e:
        print(f"maas fleet: {e}", file=sys.stderr)
        return 1
    finally:
        group.stop()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    return 0


def _fleet_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["up", "status", "down"])
    p.add_argument("--replicas", type=int, default=2)
    _add_paths(p)
    p.add_argument("--served-from", help="the published copy (s3://...) the replicas read")
    p.add_argument("--no-build", action="store_true", help="serve the repository as it is")
    p.add_argument("--host", default="127.0.0.1", help="address nginx listens on")
    p.add_argument("--http-port", type=int, default=8000, help="nginx's HTTP port")
    p.add_argument("--grpc-port", type=int, default=8001, help="nginx's gRPC port")
    p.add_argument("--state-dir", type=Path, default=Path(C.FLEET_STATE_DIR))
    _add_keys(p)
    _add_tls(p, "nginx's HTTP (HTTPS) and gRPC ports")


def cmd_rollout(args) -> int:
    from maas import fleet
    from maas.rollout import RolloutError, rollout
    from maas.serve import ServerError

    history = args.state_dir / "rollouts.json"
    done = json.loads(history.read_text()) if history.is_file() else {}
    if args.command == "rollback":
        if args.model not in done:
            print(f"maas rollback: no rollout of {args.model} on record in {history}",
                  file=sys.stderr)  # fmt: skip
            return 1
        to = max(done[args.model]["from"])
    else:
        to = args.to
    addresses = [u.split("://")[-1] for u in args.url]
    if not addresses:
        state = fleet.status(args.state_dir)
        if state is None:
            print("maas rollout: no fleet is up; name the replicas with --url", file=sys.stderr)
            return 1
        addresses = [r["http"] for r in state["replicas"]]
    from maas.serve import Keys

    key_file = args.admin_key_file or args.state_dir / fleet.ADMIN_KEY_FILE
    try:
        keys = Keys.from_env(key_file if key_file.is_file() else None)
    except (OSError, ServerError) as e:
        print(f"maas {args.command}: {e}", file=sys.stderr)
        return 1
    try:
        steps = rollout(addresses, args.model, to, args.repository, keys.headers)
    except (RolloutError, OSError) as e:
        print(f"maas {args.command}: {e}", file=sys.stderr)
        return 1
    before = sorted({v for s in steps for v in s.before})
    done[args.model] = {"from": before, "to": to, "at": round(time.time())}
    args.state_dir.mkdir(parents=True, exist_ok=True)
    history.write_text(json.dumps(done, indent=2) + "\n")
    return 0


def _rollout_args(p: argparse.ArgumentParser, rollback: bool = False) -> None:
    p.add_argument("model", help="the served model to move (a core model, e.g. classifier)")
    if not rollback:
        p.add_argument("--to", type=int, required=True, help="the version to serve")
    p.add_argument(
        "--url", action="append", default=[],
        help="a replica's HTTP address (repeat); default: the fleet's replicas",
    )  # fmt: skip
    p.add_argument(
        "--repository", type=Path, default=Path("model_repository"),
        help="the built repository (its probe requests)",
    )  # fmt: skip
    p.add_argument("--state-dir", type=Path, default=Path(C.FLEET_STATE_DIR))
    p.add_argument(
        "--admin-key-file", type=Path,
        help="the replicas' admin key (default: the fleet's, in --state-dir, or $MAAS_ADMIN_KEY)",
    )  # fmt: skip


def cmd_tune(argv: list[str]) -> int:
    from maas.benchmarks.tune import main as tune

    return 0 if tune(argv) is not None else 1


def cmd_demo(args) -> int:
    from maas.demo import run_demo
    from maas.pipeline import Paths

    return run_demo(Paths(args.artifacts, args.repository), _ports(args), data_dir=args.data_dir)


def _family(p: argparse.ArgumentParser, default: str | None = "image_classifier") -> None:
    p.add_argument(
        "family", nargs="?", default=default, choices=list(families.FAMILIES),
        help=f"default: {default or 'every family'}",
    )  # fmt: skip


def _train_args(p: argparse.ArgumentParser) -> None:
    """The family, then every training config's fields as flags (each family takes its own)."""
    _family(p)
    fields: dict[str, tuple[object, list[str]]] = {}  # name -> (a default, "value (family)")
    for family in families.FAMILIES.values():
        config = families.resolve(family.config)
        for f in dataclasses.fields(config):
            value = getattr(config(), f.name)
            fields.setdefault(f.name, (value, []))[1].append(f"{value} ({family.name})")
    for name, (value, defaults) in fields.items():
        flag, text = "--" + name.replace("_", "-"), "default: " + ", ".join(defaults)
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
        else:
            kind = str if name in ("data_dir", "out") else type(value)
            p.add_argument(flag, type=kind, default=None, help=text)


def _export_args(p: argparse.ArgumentParser) -> None:
    _family(p)
    p.add_argument("--checkpoint", type=Path, help="default: the family's under artifacts/")
    p.add_argument("--out", type=Path, help="default: model.onnx beside the checkpoint")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference")


def _build_args(p: argparse.ArgumentParser) -> None:
    from maas.build.configs import ServingOptions
    from maas.build.repository import BuildOptions
    from maas.build.variants import VARIANTS

    opts, build = ServingOptions(), BuildOptions()
    _family(p, default=None)
    p.add_argument("--checkpoint", type=Path, help="default: the family's under artifacts/")
    p.add_argument("--onnx", type=Path, help="default: model.onnx beside the checkpoint")
    own = p.add_argument_group("your own ONNX image classifier (with --onnx)")
    own.add_argument("--labels", type=Path, help="one class name per line, in output order")
    own.add_argument("--name", help="what clients call (default: the ONNX file's name)")
    own.add_argument(
        "--scale", type=float, default=1.0,
        help="the model takes (pixel / 255 * scale - mean) / std: 1 for 0..1, 255 for 0..255",
    )  # fmt: skip
    own.add_argument("--mean", type=float, nargs="+", default=(0.0,), help="per channel, or one")
    own.add_argument("--std", type=float, nargs="+", default=(1.0,), help="per channel, or one")
    own.add_argument(
        "--layout", choices=["nchw", "nhwc"],
        help="channels first or last (default: read from the model where it is unambiguous)",
    )  # fmt: skip
    own.add_argument(
        "--outputs", choices=["logits", "probabilities"],
        help="what the output holds (default: judged on real images: rows summing to 1 are "
        "probabilities, served without a second softmax)",
    )  # fmt: skip
    own.add_argument(
        "--size", type=int, nargs=2, metavar=("H", "W"),
        help="the input size to serve, for a model whose size is free",
    )  # fmt: skip
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument(
        "--variant", default="auto", choices=["auto", *VARIANTS],
        help="auto: every variant this machine can build; the fastest that passes the gate",
    )  # fmt: skip
    p.add_argument(
        "--tolerance", type=float, default=None,
        help="accuracy points a variant may lose vs PyTorch (default: 0.5 fp32/fp16, 1.0 int8)",
    )  # fmt: skip
    p.add_argument("--keep-versions", type=int, default=build.keep_versions)
    p.add_argument("--serve-versions", type=int, default=opts.serve_versions)
    p.add_argument("--calibration-images", type=int, default=build.calibration_images)
    p.add_argument("--trt-min-batch", type=int, default=build.profile.min_batch)
    p.add_argument("--trt-opt-batch", type=int, default=build.profile.opt_batch)
    p.add_argument("--trt-max-batch", type=int, default=build.profile.max_batch)
    p.add_argument("--workspace-mb", type=int, default=build.workspace_bytes >> 20)
    p.add_argument("--max-batch-size", type=int, default=opts.max_batch_size)
    p.add_argument("--top-k", type=int, default=opts.default_top_k, help="default TOP_K")
    p.add_argument("--max-pixels", type=int, default=opts.max_pixels, help="decode limit")
    p.add_argument("--queue-delay-us", type=int, default=opts.queue_delay_us)
    p.add_argument("--preferred-batch-size", type=int, default=opts.preferred_batch_size)
    p.add_argument("--preprocess-instances", type=int, default=opts.preprocess_instances)
    p.add_argument("--classifier-instances", type=int, default=opts.classifier_instances)
    p.add_argument("--postprocess-instances", type=int, default=opts.postprocess_instances)
    p.add_argument(
        "--intra-op-threads", type=int, default=opts.ort_intra_op_threads,
        help="ONNX Runtime threads per classifier instance (0: cores / instances)",
    )  # fmt: skip


def _serve_args(p: argparse.ArgumentParser) -> None:
    _add_paths(p)
    _add_ports(p)
    p.add_argument("--no-build", action="store_true", help="serve the repository as it is")
    p.add_argument("--quiet", action="store_true", help="do not echo the server's log")
    p.add_argument(
        "--no-heal", action="store_true",
        help="no watchdog: a model whose Python stub died stays broken (see maas.health)",
    )  # fmt: skip
    p.add_argument("--check-interval", type=float, default=2.0, help="seconds between checks")
    _add_keys(p)
    _add_tls(p, "gRPC (tritonserver's HTTP has none: HTTPS is a balancer's, see maas fleet)")
    p.add_argument("--health-port", type=int, help="serve GET /health on this port")
    p.add_argument(
        "--host", default="127.0.0.1",
        help="address the server (HTTP, gRPC, metrics, health) listens on; 0.0.0.0: all",
    )  # fmt: skip
    from maas.serve import BACKEND_DIR_ENV, backend_dir_default

    p.add_argument(
        "--backend-dir", type=Path, default=backend_dir_default(),
        help="a folder of more Triton backends (e.g. onnxruntime/) to use beside the Python "
        f"backend; with onnxruntime the core models run natively (default: ${BACKEND_DIR_ENV})",
    )  # fmt: skip


def _health_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    _client_args(p, out=False, tls=False)


def cmd_health(args) -> int:
    """One request through every served pipeline; exit 0 when all answer (an exec probe)."""
    from maas.clients.client import parse_url
    from maas.health import check
    from maas.probe import Probes

    scheme, address = parse_url(args.url, args.protocol)
    if scheme != "http":
        print("maas health: give the server's HTTP URL", file=sys.stderr)
        return 1
    try:
        headers = C.client_key_headers("http")  # where the server makes inference need one
        health = check(address, Probes.of(args.repository, headers))
    except Exception as e:  # no repository, no server: not healthy, and say why
        print(f"maas health: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for name, error in health.failing.items():
        print(f"{name}: {error.splitlines()[0]}", file=sys.stderr)
    print(json.dumps(health.as_dict()))
    return 0 if health.ok else 1


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _classify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path)
    _client_args(p, out=False)
    p.add_argument("--top-k", type=_positive, default=None, help="default: the server's (3)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _forecast_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("values", nargs="*", help="the history, oldest first")
    p.add_argument("--file", type=Path, help="or read it from a file (numbers, any separators)")
    p.add_argument("--horizon", type=_positive, default=None, help="default: the model's (12)")
    _client_args(p, out=False)
    p.add_argument("--json", action="store_true", help="one JSON object")


def _client_args(p: argparse.ArgumentParser, out: bool = True, tls: bool = True) -> None:
    p.add_argument(
        "--url", default="http://127.0.0.1:8000", help="http://host:port, https://..., grpc://..."
    )
    p.add_argument("--protocol", choices=["http", "grpc"], help="for a URL without a scheme")
    if tls:
        _client_tls_args(p)
    if out:
        p.add_argument("--out", type=Path, default=Path("generated"), help="folder for PNGs")


def _generate_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("digit", type=int, help="0..9")
    _sample_args(p)


def _sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same images")
    p.add_argument("--count", type=int, default=8, help="images (1..64)")
    _client_args(p)


def _images_args(p: argparse.ArgumentParser, out: bool = True) -> None:
    p.add_argument("images", nargs="+", type=Path)
    _client_args(p, out)


def _decode_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", type=Path, help="latent rows (default: stdin), as encode prints")
    _client_args(p)


def _demo_args(p: argparse.ArgumentParser) -> None:
    _add_paths(p)
    _add_ports(p)


# name: (help, adds its options, runs it). Options are added only for the command being run,
# so that a client command never imports what training and building need (torch: ~2.5 s).
COMMANDS = {
    "train": ("train a family (default: the CNN)", _train_args, cmd_train),
    "export": ("checkpoint -> ONNX, parity-gated", _export_args, cmd_export),
    "build": (
        "ONNX -> gated versions in the Triton repository (no family: what is missing)",
        _build_args,
        cmd_build,
    ),
    "serve": ("build what is missing, run tritonserver in the foreground", _serve_args, cmd_serve),
    "classify": ("classify images with a running server", _classify_args, cmd_classify),
    "forecast": ("forecast a series with a running server", _forecast_args, cmd_forecast),
    "generate": ("the GAN: PNGs of a digit from a seed", _generate_args, cmd_generate),
    "sample": ("the VAE: PNGs drawn from a seed", _sample_args, cmd_sample),
    "encode": ("the VAE: images -> latent codes", lambda p: _images_args(p, False), cmd_encode),
    "decode": ("the VAE: latent codes -> PNGs", _decode_args, cmd_decode),
    "reconstruct": ("the VAE: images -> PNGs through the code", _images_args, cmd_reconstruct),
    "health": (
        "a request through every pipeline: exit 0 if all answer",
        _health_args,
        cmd_health,
    ),
    "tune": ("search serving configs on this machine (see maas tune -h)", None, None),
    "demo": ("pipeline + server + classify over HTTP and gRPC", _demo_args, cmd_demo),
    "publish": ("the built repository to S3-compatible storage", _publish_args, cmd_publish),
    "fleet": ("replicas behind nginx: up, status, down", _fleet_args, cmd_fleet),
    "rollout": ("serve another version of a model, replica by replica", _rollout_args, cmd_rollout),
    "rollback": (
        "back to the version served before the last rollout",
        lambda p: _rollout_args(p, rollback=True),
        cmd_rollout,
    ),
}


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, or (with `command`) only that command's options filled in."""
    ap = argparse.ArgumentParser(prog="maas", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (text, add_arguments, run) in COMMANDS.items():
        p = sub.add_parser(name, help=text)
        if add_arguments is not None and command in (None, name):
            add_arguments(p)
        p.set_defaults(func=run)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tune"]:  # its own parser: benchmarks/tune.py
        return cmd_tune(argv[1:])
    # Only the chosen command's options: `maas --help` or a typo needs none of them.
    args = parser(argv[0] if argv else "").parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
