"""The `maas` command: one subcommand per stage and one per served pipeline's task.

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
    maas health [--url URL]                      a request through every pipeline (exec probe)
    maas demo                                    the pipeline, then classify over HTTP and gRPC
    maas tune [--p99-budget MS] [--apply DIR]    search serving configs on this machine
    maas publish s3://BUCKET/PREFIX [--dry-run]  the built repository to S3 (changes only)
    maas fleet up|status|down [--replicas N]     replicas behind nginx (see maas.fleet)
    maas pod-guard [--tenants F] --out FILE      the Kubernetes pod's guard config (nginx)
    maas rollout MODEL --to N | maas rollback MODEL   a version change, replica by replica

Each command lives beside its arguments in the module of its concern (stages, serving, calls,
operations); this table says which, so that a command imports only what it needs (a client
command never imports torch). Errors maas raises on purpose (maas.errors) become one line on
stderr and exit code 1, here and nowhere else.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from maas.errors import MaasError, explain

# name -> (module of maas.cli, help)
COMMANDS = {
    "train": ("stages", "train a family (default: the CNN)"),
    "export": ("stages", "checkpoint -> ONNX, parity-gated"),
    "build": ("stages", "ONNX -> gated versions in the repository (no family: what is missing)"),
    "serve": ("serving", "build what is missing, run tritonserver in the foreground"),
    "demo": ("serving", "pipeline + server + classify over HTTP and gRPC"),
    "health": ("serving", "a request through every pipeline: exit 0 if all answer"),
    "classify": ("calls", "classify images with a running server"),
    "forecast": ("calls", "forecast a series with a running server"),
    "generate": ("calls", "the GAN: PNGs of a digit from a seed"),
    "sample": ("calls", "the VAE: PNGs drawn from a seed"),
    "encode": ("calls", "the VAE: images -> latent codes"),
    "decode": ("calls", "the VAE: latent codes -> PNGs"),
    "reconstruct": ("calls", "the VAE: images -> PNGs through the code"),
    "tune": ("operations", "search serving configs on this machine (see maas tune -h)"),
    "publish": ("operations", "the built repository to S3-compatible storage"),
    "fleet": ("operations", "replicas behind nginx: up, status, down"),
    "pod-guard": ("operations", "the Kubernetes pod's guard config; with tenants: a Secret"),
    "rollout": ("operations", "serve another version of a model, replica by replica"),
    "rollback": ("operations", "back to the version served before the last rollout"),
}  # fmt: skip


def parser(command: str | None = None) -> argparse.ArgumentParser:
    """The whole CLI, with only `command`'s options filled in (importing only its module)."""
    ap = argparse.ArgumentParser(prog="maas", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    for name, (module, text) in COMMANDS.items():
        p = sub.add_parser(name, help=text)
        if name == command:
            add_arguments, run = importlib.import_module(f"maas.cli.{module}").COMMANDS[name]
            if add_arguments is not None:
                add_arguments(p)
            p.set_defaults(run=run)
    return ap


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    logging.basicConfig(level=logging.INFO, format="[maas] %(message)s", stream=sys.stderr)
    command = argv[0] if argv else ""
    if command == "tune":  # its own parser: benchmarks/tune.py
        from maas.cli.operations import tune

        return tune(argv[1:])
    args = parser(command).parse_args(argv)
    try:
        return args.run(args) or 0
    except (MaasError, OSError) as e:  # a file, a server, a gate: said in one line
        print(f"maas {command}: {explain(e)}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
