"""The `maas` command: one subcommand per stage.

    maas train [--data-dir DIR] [--epochs N]     -> artifacts/checkpoint.pt
    maas export                                  -> artifacts/model.onnx (parity-gated)
    maas build                                   -> model_repository/
    maas serve [--http-port 8000 ...]            builds what is missing, runs tritonserver
    maas classify IMAGE... [--url URL] [--protocol http|grpc] [--top-k K]
    maas demo                                    the pipeline, then classify over HTTP and gRPC
    maas tune [--p99-budget MS] [--apply DIR]    search serving configs on this machine

Each subcommand's --help lists its options.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path


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
    from maas.training.train import TrainConfig, train

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    train(TrainConfig(**{k: v for k, v in vars(args).items() if k in fields and v is not None}))
    return 0


def cmd_export(args) -> int:
    from maas.training.export import export

    export(args.checkpoint, args.out, tolerance=args.tolerance)
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

    try:
        build = BuildOptions(
            variant=args.variant,
            tolerance=args.tolerance,
            keep_versions=args.keep_versions,
            calibration_images=args.calibration_images,
            profile=Profile(args.trt_min_batch, args.trt_opt_batch, args.trt_max_batch),
            workspace_bytes=args.workspace_mb << 20,
        )
        build_repository(args.checkpoint, args.onnx, args.repository, serving_options(args), build)
    except (GateError, TensorRTUnavailable, ValueError, FileNotFoundError) as e:
        print(f"maas build: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args) -> int:
    from maas.pipeline import Paths, ensure_built
    from maas.serve import ServerError, TritonServer

    paths = Paths(args.artifacts, args.repository)
    if not args.no_build:
        ensure_built(paths, data_dir=args.data_dir)
    server = TritonServer(paths.repository, _ports(args), echo=not args.quiet)

    def announce(server: TritonServer) -> None:
        p = server.ports
        print(
            f"\n[maas] ready: HTTP {p.http}, gRPC {p.grpc}, metrics {p.metrics} "
            f"(a probe request went through every ensemble in {paths.repository}; "
            f"tritonserver pid {server.process.pid})\n"
            f"[maas] try: .venv/bin/maas classify {paths.samples}/* "
            f"--url grpc://127.0.0.1:{p.grpc}\n"
            f"[maas] Ctrl-C stops the server",
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
        with Client(args.url, args.protocol) as client:
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


def cmd_tune(argv: list[str]) -> int:
    from maas.benchmarks.tune import main as tune

    return 0 if tune(argv) is not None else 1


def cmd_demo(args) -> int:
    from maas.demo import run_demo
    from maas.pipeline import Paths

    return run_demo(Paths(args.artifacts, args.repository), _ports(args), data_dir=args.data_dir)


def _train_args(p: argparse.ArgumentParser) -> None:
    from maas.training.train import TrainConfig

    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = str if f.name in ("data_dir", "out") else type(value)
            p.add_argument(flag, type=kind, default=None, help=f"default: {value}")


def _export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    p.add_argument("--out", type=Path, default=Path("artifacts/model.onnx"))
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference")


def _build_args(p: argparse.ArgumentParser) -> None:
    from maas.build.configs import ServingOptions
    from maas.build.repository import BuildOptions
    from maas.build.variants import VARIANTS

    opts, build = ServingOptions(), BuildOptions()
    p.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    p.add_argument("--onnx", type=Path, default=Path("artifacts/model.onnx"))
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


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _classify_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="http://host:port, grpc://...")
    p.add_argument("--protocol", choices=["http", "grpc"], help="for a URL without a scheme")
    p.add_argument("--top-k", type=_positive, default=None, help="default: the server's (3)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def _demo_args(p: argparse.ArgumentParser) -> None:
    _add_paths(p)
    _add_ports(p)


# name: (help, adds its options, runs it). Options are added only for the command being run,
# so that a client command never imports what training and building need (torch: ~2.5 s).
COMMANDS = {
    "train": ("train the CNN", _train_args, cmd_train),
    "export": ("checkpoint -> ONNX, parity-gated", _export_args, cmd_export),
    "build": (
        "ONNX -> a gated classifier version in the Triton repository",
        _build_args,
        cmd_build,
    ),
    "serve": ("build what is missing, run tritonserver in the foreground", _serve_args, cmd_serve),
    "classify": ("classify images with a running server", _classify_args, cmd_classify),
    "tune": ("search serving configs on this machine (see maas tune -h)", None, None),
    "demo": ("pipeline + server + classify over HTTP and gRPC", _demo_args, cmd_demo),
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
