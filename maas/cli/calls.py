"""maas classify, forecast, generate, sample, encode, decode, reconstruct: one request to each
served pipeline from the command line, over a running server (maas.clients.client)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from maas.cli import common
from maas.errors import OptionError


def classify_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", type=Path)
    common.client(p, out=False)
    p.add_argument("--top-k", type=common.positive, default=None, help="default: the server's")
    p.add_argument("--json", action="store_true", help="one JSON object per line")


def classify(args) -> int:
    """Classify every readable image; each file that fails is named on stderr, and the exit
    code is 1 if any did, after the others were answered."""
    from maas.clients.errors import InvalidInput

    readable, failed = [], 0
    for path in args.images:
        try:
            readable.append((path, path.read_bytes()))
        except OSError as e:
            print(f"maas classify: {path}: {e.strerror or e}", file=sys.stderr)
            failed += 1
    with common.client_of(args) as client:
        outcomes = client.classify_each([data for _, data in readable], top_k=args.top_k)
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


def forecast_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("values", nargs="*", help="the history, oldest first")
    p.add_argument("--file", type=Path, help="or read it from a file (numbers, any separators)")
    p.add_argument("--horizon", type=common.positive, default=None, help="default: the model's")
    common.client(p, out=False)
    p.add_argument("--json", action="store_true", help="one JSON object")


def forecast(args) -> int:
    """Forecast one series: values given on the command line or read from a file."""
    text = args.file.read_text() if args.file else " ".join(args.values)
    try:
        history = [float(v) for v in text.replace(",", " ").split()]
    except ValueError as e:
        raise OptionError(f"the history must be numbers: {e}") from None
    with common.client_of(args) as client:
        answer = client.forecast(history, args.horizon)
    if args.json:
        print(json.dumps(dataclasses.asdict(answer)))
        return 0
    for step, (value, low, high) in enumerate(zip(*dataclasses.astuple(answer), strict=True), 1):
        print(f"+{step}: {value:.3f}  [{low:.3f}, {high:.3f}]")
    return 0


def save_pngs(files: list[bytes], out: Path, stem: str) -> int:
    """Write each PNG as out/stem_<i>.png (whole files only: a temporary name, then renamed)
    and print the paths."""
    out.mkdir(parents=True, exist_ok=True)
    for i, data in enumerate(files):
        path = out / f"{stem}_{i:02d}.png"
        tmp = path.with_name(f".{path.name}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)
        print(path)
    return 0


def sample_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=0, help="the same seed gives the same images")
    p.add_argument("--count", type=int, default=8, help="images (1..the model's max batch)")
    common.client(p)


def generate_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("digit", type=int, help="0..9")
    sample_arguments(p)


def generate(args) -> int:
    """The GAN: COUNT images of DIGIT from SEED."""
    with common.client_of(args) as client:
        files = client.generate(args.digit, args.seed, args.count)
    return save_pngs(files, args.out, f"digit{args.digit}_seed{args.seed}")


def sample(args) -> int:
    """The VAE: COUNT images drawn from its prior with SEED."""
    with common.client_of(args) as client:
        files = client.sample(args.seed, args.count)
    return save_pngs(files, args.out, f"vae_seed{args.seed}")


def images_arguments(p: argparse.ArgumentParser, out: bool = True) -> None:
    p.add_argument("images", nargs="+", type=Path)
    common.client(p, out)


def reconstruct(args) -> int:
    with common.client_of(args) as client:
        files = client.reconstruct(args.images)
    for image, data in zip(args.images, files, strict=True):
        save_pngs([data], args.out, f"{Path(image).stem}_reconstructed")
    return 0


def encode(args) -> int:
    """One line per image: its latent code, numbers separated by spaces (what decode reads)."""
    with common.client_of(args) as client:
        codes = client.encode(args.images)
    for row in codes:
        print(" ".join(f"{v:.6g}" for v in row))
    return 0


def decode_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--file", type=Path, help="latent rows (default: stdin), as encode prints")
    common.client(p)


def decode(args) -> int:
    import numpy as np

    text = args.file.read_text() if args.file else sys.stdin.read()
    try:
        rows = [[float(v) for v in line.split()] for line in text.splitlines() if line.strip()]
        latents = np.array(rows, np.float32)
    except ValueError as e:
        raise OptionError(f"latent rows of equal length expected: {e}") from None
    with common.client_of(args) as client:
        files = client.decode(latents)
    return save_pngs(files, args.out, "decoded")


COMMANDS = {
    "classify": (classify_arguments, classify),
    "forecast": (forecast_arguments, forecast),
    "generate": (generate_arguments, generate),
    "sample": (sample_arguments, sample),
    "encode": (lambda p: images_arguments(p, out=False), encode),
    "decode": (decode_arguments, decode),
    "reconstruct": (images_arguments, reconstruct),
}
