"""maas train, export, build: the stages, each beside its arguments. Each honours --artifacts
(where checkpoints and ONNX files live: maas.workspace.Paths) and the family's own layout in it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from maas import families
from maas.cli import common
from maas.errors import OptionError


def _family(p: argparse.ArgumentParser, default: str | None = "image_classifier") -> None:
    p.add_argument(
        "family", nargs="?", default=default, choices=list(families.FAMILIES),
        help=f"default: {default or 'every family'}",
    )  # fmt: skip


def _artifacts(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="where checkpoints and ONNX files live (default: artifacts/)")  # fmt: skip


def _paths(args):
    from maas.workspace import Paths

    return Paths(args.artifacts, getattr(args, "repository", Path("model_repository")))


def train_arguments(p: argparse.ArgumentParser) -> None:
    """The family, then every training config's fields as flags (each family takes its own)."""
    _family(p)
    _artifacts(p)
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


def train(args) -> int:
    family = families.get(args.family)
    given = {k: v for k, v in vars(args).items() if k not in ("family", "run", "artifacts")}
    given["out"] = args.out or str(_paths(args).checkpoint(family.name))
    families.train(family, **given)
    return 0


def export_arguments(p: argparse.ArgumentParser) -> None:
    _family(p)
    _artifacts(p)
    p.add_argument("--checkpoint", type=Path, help="default: the family's under --artifacts")
    p.add_argument("--out", type=Path, help="default: its ONNX beside the checkpoint")
    p.add_argument("--tolerance", type=float, default=1e-4, help="max abs output difference")


def export(args) -> int:
    family, paths = families.get(args.family), _paths(args)
    families.resolve(family.export)(
        args.checkpoint or paths.checkpoint(family.name),
        args.out or paths.onnx(family.name),
        tolerance=args.tolerance,
    )
    return 0


def build_arguments(p: argparse.ArgumentParser) -> None:
    from maas.build.configs import ServingOptions
    from maas.build.repository import BuildOptions
    from maas.build.variants import VARIANTS

    _family(p, default=None)
    _artifacts(p)
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--checkpoint", type=Path, help="default: the family's under --artifacts")
    p.add_argument("--onnx", type=Path, help="default: the family's under --artifacts")
    own = p.add_argument_group("your own ONNX image classifier (with --onnx; docs/own-model.md)")
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
    own.add_argument("--size", type=int, nargs=2, metavar=("H", "W"),
                     help="the input size to serve, for a model whose size is free")  # fmt: skip
    p.add_argument(
        "--variant", default="auto", choices=["auto", *VARIANTS],
        help="auto: every variant this machine can build; the fastest that passes the gate",
    )  # fmt: skip
    p.add_argument(
        "--tolerance", type=float, default=None,
        help="accuracy points a variant may lose vs PyTorch (default: 0.5 fp32/fp16, 1.0 int8)",
    )  # fmt: skip
    build = p.add_argument_group("the build (maas.build.repository.BuildOptions)")
    common.dataclass_flags(build, BuildOptions, skip=("variant", "tolerance", "cache_dir"))
    build.add_argument("--trt-min-batch", type=int, default=1)
    build.add_argument("--trt-opt-batch", type=int, default=BuildOptions().profile.opt_batch)
    build.add_argument("--trt-max-batch", type=int, default=BuildOptions().profile.max_batch)
    serving = p.add_argument_group("how it serves (maas.build.configs.ServingOptions)")
    common.dataclass_flags(serving, ServingOptions, skip=("instances",))
    serving.add_argument(
        "--instances", action="append", default=[], metavar="MODEL=N",
        help="instances of a model (repeat): e.g. classifier=2 (default: its declaration's)",
    )  # fmt: skip


def serving_options(args):
    from maas.build.configs import ServingOptions

    counts = {}
    for given in args.instances:
        model, _, count = given.partition("=")
        if not count.isdigit() or int(count) < 1:
            raise OptionError(f"--instances {given!r}: expected MODEL=N with N >= 1")
        counts[model] = int(count)
    return common.from_flags(ServingOptions, args, instances=counts)


def build(args) -> int:
    from maas.build.repository import BuildOptions, build_repository
    from maas.build.tensorrt import Profile
    from maas.workspace import ensure_built

    opts = serving_options(args)
    if args.family is None:  # whatever is missing, every family, on the defaults
        if args.variant != "auto" or args.checkpoint or args.onnx:
            raise OptionError(
                "--variant, --checkpoint and --onnx apply to one family: name it, e.g. "
                f"maas build image_classifier --variant {args.variant}"
            )
        ensure_built(_paths(args), opts=opts)
        return 0
    profile = Profile(args.trt_min_batch, args.trt_opt_batch, args.trt_max_batch)
    options = common.from_flags(
        BuildOptions, args, variant=args.variant, tolerance=args.tolerance, profile=profile
    )
    if args.labels is not None:  # a user's own ONNX, served through the family's steps
        return _build_own(args, opts, options)
    paths = _paths(args)
    build_repository(
        args.checkpoint or paths.checkpoint(args.family), args.onnx or paths.onnx(args.family),
        args.repository, opts, options, family=args.family,
    )  # fmt: skip
    return 0


def _build_own(args, opts, options) -> int:
    from maas.build.own_model import Scaling, build_own_onnx

    if args.family != "image_classifier" or args.onnx is None:
        raise OptionError("--labels goes with image_classifier --onnx FILE")
    build_own_onnx(
        args.onnx, args.labels, args.repository, args.name or args.onnx.stem,
        Scaling(args.scale, tuple(args.mean), tuple(args.std)), opts, options,
        layout=args.layout, outputs=args.outputs,
        size=tuple(args.size) if args.size else None,
    )  # fmt: skip
    return 0


COMMANDS = {
    "train": (train_arguments, train),
    "export": (export_arguments, export),
    "build": (build_arguments, build),
}
