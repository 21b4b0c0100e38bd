"""What a built repository costs: its size, by part, and the time a tritonserver takes to load
all of it and answer a probe through every pipeline, served three ways.

    python -m maas.benchmarks.repository_costs --repository model_repository
        -> benchmarks/results/repository.{json,md}

- `stock`: as NVIDIA's container serves it: the native onnxruntime backend ($MAAS_BACKEND_DIR),
  the stubs on a Python with numpy alone (maas.container), Triton's default model control;
- `stock, no environments`: the same server and models, the steps' EXECUTION_ENV_PATH
  taken out of a copy and the stubs on this venv's Python (it has Pillow): what the
  environment itself costs at load;
- `stock, environments as tar.gz`: the same with each environment packed as conda-pack packs
  one (EXECUTION_ENV_PATH naming env.tar.gz): the Python backend unpacks it at every start;
- `bare wheel`: `maas serve` on the nvidia-pytriton tritonserver, which has no onnxruntime
  backend: the networks on their Python-backend alternates (configs/python.pbtxt).
Each start is timed from launch to the probe's answer, `--rounds` times in turns; the median
is reported.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tarfile
import tempfile
import time
from pathlib import Path

from maas import container
from maas.backends import backend_dir_default
from maas.build.configs import read_config, write_config
from maas.serve import ServerConfig, TritonServer


def size_by_part(repository: Path) -> dict[str, int]:
    """Bytes: the steps' environments, the shipped runtime, the networks, the rest."""
    parts = {"environments": 0, "maas_runtime": 0, "networks": 0, "other": 0}
    for path in repository.rglob("*"):
        if not path.is_file():
            continue
        relative = path.relative_to(repository).parts
        if len(relative) > 1 and relative[1] == "env":
            part = "environments"
        elif "maas_runtime" in relative:
            part = "maas_runtime"
        elif path.suffix in (".onnx", ".plan"):
            part = "networks"
        else:
            part = "other"
        parts[part] += path.stat().st_size
    return {**parts, "total": sum(parts.values())}


def with_environments(repository: Path, into: Path, how: str) -> Path:
    """A copy whose steps have no environment ("none") or a packed one ("tar.gz")."""
    copy = shutil.copytree(repository, into / how / "model_repository")
    for path in copy.glob("*/config.pbtxt"):
        config = read_config(path)
        if "EXECUTION_ENV_PATH" not in config.parameters:
            continue
        if how == "none":
            del config.parameters["EXECUTION_ENV_PATH"]
        else:
            env = path.parent / "env"
            with tarfile.open(path.parent / "env.tar.gz", "w:gz") as tar:
                for entry in sorted(env.iterdir()):
                    tar.add(entry, arcname=entry.name)
            shutil.rmtree(env)
            config.parameters["EXECUTION_ENV_PATH"].string_value += ".tar.gz"
        write_config(path, config)
    return copy


def load_seconds(repository: Path, **server) -> float:
    started = time.monotonic()
    with TritonServer(repository, ServerConfig(**server)):
        return time.monotonic() - started


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)
    backends = backend_dir_default()
    if backends is None:
        raise SystemExit("needs $MAAS_BACKEND_DIR (Triton's onnxruntime backend), as make does")
    with tempfile.TemporaryDirectory() as tmp:
        stock = dict(backend_dir=backends, python=container.container_python(),
                     model_control="none")  # fmt: skip
        ways = {
            "stock": (args.repository, stock),
            "stock, no environments": (
                with_environments(args.repository, Path(tmp), "none"),
                dict(backend_dir=backends, model_control="none"),
            ),
            "stock, environments as tar.gz": (
                with_environments(args.repository, Path(tmp), "tar.gz"), stock,
            ),
            "bare wheel": (args.repository, {}),
        }  # fmt: skip
        times: dict[str, list[float]] = {way: [] for way in ways}
        for _ in range(args.rounds):
            for way, (repo, server) in ways.items():
                times[way].append(load_seconds(repo, **server))
                print(f"{way}: {times[way][-1]:.1f} s", flush=True)
    result = {
        "repository": str(args.repository),
        "models": len(list(args.repository.glob("*/config.pbtxt"))),
        "bytes": size_by_part(args.repository),
        "load_seconds_median": {w: round(statistics.median(t), 1) for w, t in times.items()},
        "load_seconds": {w: [round(x, 1) for x in t] for w, t in times.items()},
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "repository.json").write_text(json.dumps(result, indent=2) + "\n")
    mb = {k: f"{v / 1e6:.1f} MB" for k, v in result["bytes"].items()}
    lines = [
        f"# The built repository ({result['models']} models)",
        "",
        "| part | size |",
        "|---|---|",
        *(f"| {k} | {v} |" for k, v in mb.items()),
        "",
        f"| served | load + probe, median of {args.rounds} (s) |",
        "|---|---|",
        *(f"| {w} | {s} |" for w, s in result["load_seconds_median"].items()),
        "",
    ]
    (args.out / "repository.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return result


if __name__ == "__main__":
    main()
