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

from maas.pipeline import Paths


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
    from maas.pipeline import ensure_built
    from maas.serve import ServerError, TritonServer

    paths = Paths(args.artifacts, args.repository)
    if not args.no_build:
        ensure_built(paths, data_dir=args.data_dir)
    server = TritonServer(paths.repository, _ports(args), echo=not args.quiet)
    try:
        server.start()
    except ServerError as e:
        print(f"maas serve: {e}", file=sys.stderr)
        return 1
    p = server.ports
    print(
        f"\n[maas] ready: HTTP {p.http}, gRPC {p.grpc}, metrics {p.metrics} "
        f"(a probe image went through {paths.repository}/image_classifier)\n"
        f"[maas] try: .venv/bin/maas classify {paths.samples}/* --url grpc://127.0.0.1:{p.grpc}\n"
        f"[maas] Ctrl-C stops the server",
        flush=True,
    )
    code = server.wait()
    return 0 if code in (0, -2, -15) else code


def cmd_classify(args) -> int:
    from maas.clients.client import Client
    from maas.clients.errors import ClientError

    try:
        with Client(args.url, args.protocol) as client:
            results = client.classify(args.images, top_k=args.top_k)
    except (ClientError, OSError, ValueError) as e:
        print(f"maas classify: {type(e).__name__}: {e}", file=sys.stderr)
        return 1
    for path, result in zip(args.images, results, strict=True):
        if args.json:
            preds = [dataclasses.asdict(p) for p in result.predictions]
            print(json.dumps({"image": str(path), "predictions": preds}))
        else:
            top = ", ".join(f"{p.label} ({p.score:.3f})" for p in result.predictions)
            print(f"{path}: {top}")
    return 0


def cmd_tune(argv: list[str]) -> int:
    from maas.benchmarks.tune import main as tune

    return 0 if tune(argv) is not None else 1


def cmd_demo(args) -> int:
    from maas.demo import run_demo

    return run_demo(Paths(args.artifacts, args.repository), _ports(args), data_dir=args.data_dir)


def parser() -> argparse.ArgumentParser:
    from maas.training.train import TrainConfig

    ap = argparse.ArgumentParser(prog="maas", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the CNN")
    defaults = TrainConfig()
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        value = getattr(defaults, f.name)
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None)
        else:
            kind = str if f.name in ("data_dir", "out") else type(value)
            p.add_argument(flag, type=kind, default=None, help=f"default: {value}")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("export", help="checkpoint -> ONNX, parity-gated")
    p.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    p.add_argument("--out", type=Path, default=Path("artifacts/model.onnx"))
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs logit difference")
    p.set_defaults(func=cmd_export)

    from maas.build.configs import ServingOptions
    from maas.build.repository import BuildOptions
    from maas.build.variants import VARIANTS

    opts, build = ServingOptions(), BuildOptions()
    p = sub.add_parser("build", help="ONNX -> a gated classifier version in the Triton repository")
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
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("serve", help="build what is missing, run tritonserver in the foreground")
    _add_paths(p)
    _add_ports(p)
    p.add_argument("--no-build", action="store_true", help="serve the repository as it is")
    p.add_argument("--quiet", action="store_true", help="do not echo the server's log")
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("classify", help="classify images with a running server")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="http://host:port, grpc://...")
    p.add_argument("--protocol", choices=["http", "grpc"], help="for a URL without a scheme")
    p.add_argument("--top-k", type=int, default=None, help="default: the server's (3)")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=cmd_classify)

    sub.add_parser("tune", help="search serving configs on this machine (see maas tune -h)")

    p = sub.add_parser("demo", help="pipeline + server + classify over HTTP and gRPC")
    _add_paths(p)
    _add_ports(p)
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["tune"]:  # its own parser: benchmarks/tune.py
        return cmd_tune(argv[1:])
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
