"""perf_analyzer input data: real held-out images for the ensemble, real tensors for the
classifier. For users who have perf_analyzer (Triton SDK container); see perf_analyzer.sh.

    python -m maas.benchmarks.perf_analyzer_inputs      # -> benchmarks/perf_analyzer/*.json

The ensemble's IMAGE is BYTES: each entry is {"b64": ...} of the serialised tensor, i.e. a
4-byte little-endian length followed by the encoded image, as perf_analyzer expects for BYTES.
"""

from __future__ import annotations

import argparse
import base64
import json
import struct
from pathlib import Path

import numpy as np

from maas.runtime import names as C


def find_perf_analyzer() -> str | None:
    """perf_analyzer on PATH (the Triton SDK container; .ci/run adds the shared tools), or in
    ../shared/tools beside this checkout (our developer and CI machines); None elsewhere."""
    import shutil

    found = shutil.which("perf_analyzer")
    if found:
        return found
    checkout = Path(__file__).resolve().parents[1]
    bundled = checkout.parent / "shared" / "tools" / "perf_analyzer" / "bin" / "perf_analyzer"
    return str(bundled) if bundled.is_file() else None


def serialize_bytes_element(data: bytes) -> bytes:
    """Triton's BYTES wire form of one element: 4-byte little-endian length, then the bytes."""
    return struct.pack("<I", len(data)) + data


def ensemble_input_data(images: list[bytes]) -> dict:
    return {
        "data": [
            {C.IMAGE: {"b64": base64.b64encode(serialize_bytes_element(img)).decode()}}
            for img in images
        ]
    }


def classifier_input_data(pixels: np.ndarray) -> dict:
    """pixels: float32 (N, 3, H, W), already preprocessed; one entry per image."""
    return {
        "data": [
            {C.PIXELS: {"content": [round(float(v), 5) for v in p.ravel()], "shape": list(p.shape)}}
            for p in pixels
        ]
    }


def main(argv: list[str] | None = None) -> tuple[Path, Path]:
    from maas.runtime.images import layout
    from maas.runtime.png import encode_png
    from maas.workspace import heldout

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    ap.add_argument("--out", type=Path, default=Path("benchmarks/perf_analyzer"))
    ap.add_argument("--images", type=int, default=64, help="held-out images for the ensemble")
    ap.add_argument(
        "--tensors", type=int, default=16, help="for the classifier (3,072 floats each)"
    )
    args = ap.parse_args(argv)

    images = heldout(args.checkpoint)[0][: args.images]
    args.out.mkdir(parents=True, exist_ok=True)
    ensemble = args.out / "ensemble_inputs.json"
    classifier = args.out / "classifier_inputs.json"
    ensemble.write_text(json.dumps(ensemble_input_data([encode_png(x) for x in images])))
    pixels = layout(images[: args.tensors])
    classifier.write_text(json.dumps(classifier_input_data(pixels)))
    print(f"wrote {ensemble} ({len(images)} images) and {classifier} ({len(pixels)} tensors)")
    return ensemble, classifier


if __name__ == "__main__":
    main()


def run_perf_analyzer(
    binary: str,
    model: str,
    url: str,
    input_data: Path | str,
    concurrency: int,
    protocol: str = "grpc",
    window_ms: int = 4000,
    timeout_s: float = 300,
) -> dict[str, str]:
    """One perf_analyzer measurement (closed loop at `concurrency`): its `-f` CSV row, latencies
    in microseconds; raises RuntimeError with its output when it fails or a request did."""
    return sweep_perf_analyzer(
        binary, model, url, input_data, str(concurrency), protocol, window_ms, timeout_s
    )[0]


def sweep_perf_analyzer(
    binary: str,
    model: str,
    url: str,
    input_data: Path | str,
    concurrency_range: str,  # perf_analyzer's start:end:step
    protocol: str = "grpc",
    window_ms: int = 4000,
    timeout_s: float = 300,
    stability: int = 25,
    max_trials: int = 10,
) -> list[dict[str, str]]:
    """perf_analyzer over a concurrency range: its `-f` CSV rows, one per concurrency.

    Stability is judged on throughput and mean latency (perf_analyzer's default): p99 over
    windows of a few seconds swings by more than 25% on a shared 2-core machine, and one such
    run failed CI. Where no three windows agree, it tries once more with windows twice as
    long, as its own message advises."""
    import csv
    import subprocess
    import tempfile

    for window in (window_ms, 2 * window_ms):
        with tempfile.TemporaryDirectory(prefix="maas-pa-") as tmp:
            out = Path(tmp) / "pa.csv"
            run = subprocess.run(
                [binary, "-m", model, "-i", protocol, "-u", url, "--input-data", str(input_data),
                 "--concurrency-range", concurrency_range, "--measurement-interval", str(window),
                 "--stability-percentage", str(stability), "--max-trials", str(max_trials),
                 "-f", str(out)],
                capture_output=True, text=True, timeout=timeout_s,
            )  # fmt: skip
            log = run.stdout + run.stderr
            # "had error": a failed request, as its client threads report it
            if run.returncode == 0 and "had error" not in log and out.is_file():
                return list(csv.DictReader(out.open()))
            if "Failed to obtain stable measurement" not in log or "had error" in log:
                break
    raise RuntimeError(f"perf_analyzer failed (exit {run.returncode}):\n{log[-2000:]}")
