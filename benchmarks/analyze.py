"""`make analyze`: Triton's Model Analyzer searches the shipped ensemble's configuration, and its
best is re-measured beside `maas tune`'s (the shipped one), side by side, with perf_analyzer.

    make analyze            # creates .venv-analyzer (its pins clash with ours), then this:
    python -m maas.benchmarks.analyze --analyzer .venv-analyzer/bin/model-analyzer

Model Analyzer runs CPU-only in local launch mode: it starts the tritonserver `maas serve`
would (the wheel's, with our Python backend folder and this interpreter first on PATH) and
drives it with perf_analyzer from PATH, quick search over the ensemble (its composing models'
max_batch_size, dynamic batching and instance counts). Its best configuration (the highest
throughput it measured) is then served next to the shipped repository and both are measured
with perf_analyzer at --concurrency (16 64), alternately, in one run. Writes
benchmarks/results/analyze.{md,json}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from maas.access import Ports
from maas.backends import CPU_ONLY_ARGS, find_tritonserver, python_backend_dir
from maas.benchmarks.perf_analyzer_inputs import find_perf_analyzer, run_perf_analyzer
from maas.build.configs import read_config, write_config
from maas.runtime import names as C
from maas.serve import TritonServer

COMPOSING = (C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS)


def analyzer_config(repository: Path, work: Path, perf_analyzer: str, inputs: Path) -> dict:
    """Model Analyzer's profile config for the ensemble, CPU-only, local launch."""
    binary, backends = find_tritonserver()
    flags = {arg.split("=", 1)[0].removeprefix("--"): arg.split("=", 1)[1] for arg in CPU_ONLY_ARGS}
    if backends is not None:
        folder = work / "backends"
        folder.mkdir()
        flags["backend-directory"] = str(python_backend_dir(backends, folder))
    ports = Ports.free()
    env_path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    return {
        "model_repository": str(repository.resolve()),
        "profile_models": [C.ENSEMBLE],
        "cpu_only_composing_models": list(COMPOSING),
        "run_config_search_mode": "quick",
        "run_config_search_max_concurrency": 64,
        "triton_launch_mode": "local",
        "triton_server_path": str(binary),
        "triton_server_flags": flags,
        "triton_server_environment": {"PATH": env_path},
        "triton_http_endpoint": f"127.0.0.1:{ports.http}",
        "triton_grpc_endpoint": f"127.0.0.1:{ports.grpc}",
        "triton_metrics_url": f"http://127.0.0.1:{ports.metrics}/metrics",
        "client_protocol": "grpc",
        "perf_analyzer_path": perf_analyzer,
        "perf_analyzer_flags": {"input-data": str(inputs.resolve())},
        "output_model_repository_path": str(work / "variants"),
        "override_output_model_repository": True,
        "export_path": str(work / "export"),
        "checkpoint_directory": str(work / "checkpoints"),  # not ./checkpoints in the checkout
        "skip_detailed_reports": True,
    }


def run_analyzer(analyzer: str, config: dict, work: Path) -> float:
    """Run the profile (its output streams through); seconds it took."""
    path = work / "config.yaml"
    path.write_text(json.dumps(config, indent=2))  # YAML is a superset of JSON
    started = time.monotonic()
    subprocess.run([analyzer, "profile", "-f", str(path)], check=True)
    return time.monotonic() - started


def ranked(export: Path) -> list[dict[str, str]]:
    """Model Analyzer's measurements, highest throughput first: rows of its
    metrics-model-inference.csv, at most one per ensemble variant."""
    rows = list(csv.DictReader((export / "results" / "metrics-model-inference.csv").open()))
    if not rows:
        raise RuntimeError("Model Analyzer measured nothing")
    rows.sort(key=lambda r: float(r["Throughput (infer/sec)"]), reverse=True)
    best: dict[str, dict[str, str]] = {}
    for row in rows:
        best.setdefault(ensemble_variant(row), row)  # its highest measurement
    return list(best.values())


def ensemble_variant(row: dict[str, str]) -> str:
    # "image_classifier_config_N: preprocess_config_M, ...": the ensemble variant first
    return row["Model Config Path"].split(":")[0].strip()


def variant_repository(variants: Path, row: dict[str, str], into: Path) -> Path:
    """A repository of the variants one measurement used (its "Model Config Path": the
    ensemble variant, then each composing model's), renamed back to our models' names so the
    same clients and inputs measure it. (Model Analyzer's folders under the plain names hold
    whatever it profiled last.)"""
    ensemble_name, composing = row["Model Config Path"].split(":", 1)
    for variant in [v.strip() for v in composing.split(",")]:
        name = variant.rsplit("_config_", 1)[0]
        shutil.copytree(variants / variant, into / name)  # its links are relative
        config = read_config(into / name / "config.pbtxt")
        config.name = name
        write_config(into / name / "config.pbtxt", config)
    ensemble = read_config(variants / ensemble_name.strip() / "config.pbtxt")
    (into / C.ENSEMBLE / "1").mkdir(parents=True)
    ensemble.name = C.ENSEMBLE
    write_config(into / C.ENSEMBLE / "config.pbtxt", ensemble)
    return into


def describe(repository: Path) -> str:
    """The ensemble's composing models' settings, one line."""
    parts = []
    for name in COMPOSING:
        config = read_config(repository / name / "config.pbtxt")
        if config.platform == "ensemble" or not config.HasField("dynamic_batching"):
            continue
        batching = config.dynamic_batching
        parts.append(
            f"{name}: max batch {config.max_batch_size}, "
            f"{sum(g.count for g in config.instance_group)} instance(s), delay "
            f"{batching.max_queue_delay_microseconds} us"
            + (
                f", preferred {list(batching.preferred_batch_size)}"
                if batching.preferred_batch_size
                else ""
            )
        )
    return "; ".join(parts)


def side_by_side(repos: dict[str, Path], perf_analyzer: str, inputs: Path, concurrency, rounds=2):
    """label -> concurrency -> [(infer/s, p99 ms)] over `rounds`, the repositories alternating."""
    out: dict[str, dict[int, list]] = {label: {c: [] for c in concurrency} for label in repos}
    for _ in range(rounds):
        for label, repo in repos.items():
            with TritonServer(repo) as server:
                for c in concurrency:
                    row = run_perf_analyzer(perf_analyzer, C.ENSEMBLE, server.grpc_url, inputs, c)
                    out[label][c].append(
                        (float(row["Inferences/Second"]), int(row["p99 latency"]) / 1e3)
                    )
                    print(f"  {label:<28} c={c:<3} {out[label][c][-1][0]:8.1f} infer/s  "
                          f"p99 {out[label][c][-1][1]:6.1f} ms", flush=True)  # fmt: skip
    return out


def _is_default(row: dict[str, str]) -> bool:
    return ensemble_variant(row).endswith("_config_default")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--analyzer", default=".venv-analyzer/bin/model-analyzer")
    ap.add_argument("--repository", type=Path, default=Path("model_repository"), help="built")
    ap.add_argument(
        "--inputs", type=Path, default=Path("benchmarks/perf_analyzer/ensemble_inputs.json")
    )
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument(
        "--work", type=Path, help="keep Model Analyzer's output here; a finished search found "
        "there is reused (its time as recorded), only the side by side runs again",
    )  # fmt: skip
    args = ap.parse_args(argv)
    perf_analyzer = find_perf_analyzer()
    if perf_analyzer is None:
        sys.exit("perf_analyzer not found: Model Analyzer drives the server with it")
    tuned = json.loads((args.out / "tuning.json").read_text())
    with tempfile.TemporaryDirectory(prefix="maas-analyze-") as tmp:
        work = args.work or Path(tmp)
        done = work / "search_seconds.txt"
        if not done.is_file():
            for leftover in ("variants", "export", "checkpoints", "backends"):
                shutil.rmtree(work / leftover, ignore_errors=True)
            work.mkdir(parents=True, exist_ok=True)
            config = analyzer_config(args.repository, work, perf_analyzer, args.inputs)
            done.write_text(f"{run_analyzer(args.analyzer, config, work):.0f}\n")
        seconds = float(done.read_text())
        shutil.rmtree(work / "best", ignore_errors=True)
        shutil.rmtree(work / "alternative", ignore_errors=True)
        rows = ranked(work / "export")
        # Its best, and its best other than where it started (the shipped configuration, when
        # that wins): the alternative a user would adopt from it, measured beside ours.
        best = rows[0]
        alternative = next((r for r in rows if not _is_default(r)), None)
        found = (
            "the shipped configuration (its starting point)"
            if _is_default(best)
            else describe(variant_repository(work / "variants", best, work / "best"))
        )
        print(f"Model Analyzer's best ({seconds:.0f} s): {ensemble_variant(best)}: {found}")
        repos = {"maas tune (shipped)": args.repository}
        alternative_config = None
        if alternative is not None:
            folder = work / "alternative"
            variant_repository(work / "variants", alternative, folder)
            repos["Model Analyzer's best alternative"] = folder
            alternative_config = describe(folder)
        measured = side_by_side(repos, perf_analyzer, args.inputs, args.concurrency)
        summary = {
            "model_analyzer": {
                "search_seconds": round(seconds),
                "best": best,
                "config": found,
                "alternative": alternative_config,
                "ranked": [
                    {"variant": ensemble_variant(r), "infer_per_s": r["Throughput (infer/sec)"]}
                    for r in rows
                ],
            },
            "maas_tune": {
                "search_seconds": tuned.get("search_seconds"),
                "config": describe(args.repository),
            },
            "side_by_side": {
                label: {str(c): [list(x) for x in v] for c, v in per_c.items()}
                for label, per_c in measured.items()
            },
        }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "analyze.json").write_text(json.dumps(summary, indent=2) + "\n")
    lines = [
        "# Model Analyzer vs maas tune, re-measured side by side (perf_analyzer, gRPC)",
        "",
        f"- maas tune (shipped): {summary['maas_tune']['config']}",
        f"- Model Analyzer's best ({seconds:.0f} s quick search, {len(rows)} configurations "
        f"measured): {found}",
        *(
            [f"- its best alternative ({ensemble_variant(alternative)}): {alternative_config}"]
            if alternative_config
            else []
        ),
        "",
        "| configuration | concurrency | infer/s (runs) | p99 ms (runs) |",
        "|---|---|---|---|",
    ]
    for label, per_c in measured.items():
        for c, runs in per_c.items():
            lines.append(
                f"| {label} | {c} | {' / '.join(f'{t:,.0f}' for t, _ in runs)} | "
                f"{' / '.join(f'{p:.1f}' for _, p in runs)} |"
            )
    (args.out / "analyze.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return summary


if __name__ == "__main__":
    main()
