"""The `maas` command: one subcommand per stage.

    maas train [--data-dir DIR] [--epochs N]     -> artifacts/checkpoint.pt
    maas export                                  -> artifacts/model.onnx (parity-gated)
    maas build                                   -> model_repository/
    maas serve [--http-port 8000 ...]            builds what is missing, runs tritonserver
    maas classify IMAGE... [--url URL] [--protocol http|grpc] [--top-k K]
    maas demo                                    the pipeline, then classify over HTTP and gRPC

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


def cmd_build(args) -> int:
    from maas.build.configs import ServingOptions
    from maas.build.repository import build_repository

    opts = ServingOptions(
        max_batch_size=args.max_batch_size, default_top_k=args.top_k, max_pixels=args.max_pixels
    )
    build_repository(args.checkpoint, args.onnx, args.repository, opts)
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

    opts = ServingOptions()
    p = sub.add_parser("build", help="ONNX -> Triton model repository")
    p.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    p.add_argument("--onnx", type=Path, default=Path("artifacts/model.onnx"))
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--max-batch-size", type=int, default=opts.max_batch_size)
    p.add_argument("--top-k", type=int, default=opts.default_top_k, help="default TOP_K")
    p.add_argument("--max-pixels", type=int, default=opts.max_pixels, help="decode limit")
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

    p = sub.add_parser("demo", help="pipeline + server + classify over HTTP and gRPC")
    _add_paths(p)
    _add_ports(p)
    p.set_defaults(func=cmd_demo)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
