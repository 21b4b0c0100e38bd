"""Per classifier variant: size on disk, held-out accuracy, in-process latency and throughput.

    python -m maas.benchmarks.variants                    # every variant this machine builds
    python -m maas.benchmarks.variants --variant onnx ort-int8 --rounds 9

Each variant is built exactly as `maas build` builds it (build/candidates.py) and timed with
the session options the server uses. Writes benchmarks/results/variants.csv and variants.png.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import tempfile
from pathlib import Path

from maas import catalog
from maas.build import candidates as cands
from maas.build import configs, gate, image_classifier, variants
from maas.training.checkpoint import Checkpoint


def main(argv: list[str] | None = None) -> list[cands.Candidate]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    ap.add_argument("--onnx", type=Path, default=Path("artifacts/model.onnx"))
    ap.add_argument("--variant", nargs="+", default=["auto"])
    ap.add_argument("--seconds", type=float, default=1.0, help="per batch size, variant, round")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved; the median is reported")
    ap.add_argument("--intra-op-threads", type=int, default=0, help="0: as served")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)

    wanted = [v for name in args.variant for v in variants.resolve(name)]
    ckpt = Checkpoint.load(args.checkpoint)
    core = catalog.image_classifier(ckpt.preprocessing(), ckpt.class_names).core
    threads = args.intra_op_threads or configs.ServingOptions().threads(core)
    data = image_classifier.core_data(ckpt, core)
    with tempfile.TemporaryDirectory() as scratch:
        found = cands.evaluate(
            data, args.onnx, wanted, Path(scratch), intra_op_threads=threads,
            speed_seconds=args.seconds, stop_on_error=False,
        )  # fmt: skip
        # Rounds alternate between variants so that a noisy neighbour hits all of them alike.
        built = [c for c in found if c.speed is not None]
        rounds = {c.variant.name: [c.speed] for c in built}
        for _ in range(args.rounds - 1):
            for c in built:
                run = variants.runner(c.variant, c.path, core, threads, 64)
                speed = gate.measure_speed(run, data.sample, seconds=args.seconds)
                rounds[c.variant.name].append(speed)
        for c in built:
            c.speed = median_speed(rounds[c.variant.name])
    reference = next((c.verdict.reference for c in found if c.verdict), float("nan"))
    print(f"PyTorch reference accuracy {reference:.2%} on {data.record['heldout_images']} "
          f"held-out images; ONNX Runtime intra-op threads {threads}")  # fmt: skip
    print(cands.table(found))
    ok = {c.variant.name: c for c in found if c.speed is not None}
    if "onnx" in ok and "ort-int8" in ok:
        for b in (1, 16, 64):
            ratio = ok["ort-int8"].speed.images_per_s[b] / ok["onnx"].speed.images_per_s[b]
            print(f"INT8 / FP32 throughput at batch {b}: {ratio:.2f}x")
    write(found, args.out)
    return found


def median_speed(speeds: list[gate.Speed]) -> gate.Speed:
    return gate.Speed(
        statistics.median(s.latency_ms_batch1 for s in speeds),
        {b: statistics.median(s.images_per_s[b] for s in speeds) for b in speeds[0].images_per_s},
    )


def write(found: list[cands.Candidate], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    rows = [
        {
            "variant": c.variant.name,
            "precision": c.variant.precision,
            "size_bytes": c.size_bytes,
            "accuracy": c.verdict.value,
            "latency_ms_batch1": c.speed.latency_ms_batch1,
            **{f"images_per_s_batch{b}": v for b, v in c.speed.images_per_s.items()},
        }
        for c in found
        if c.speed is not None and c.verdict is not None
    ]
    if not rows:
        return
    with (out / "variants.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    fig, ax = plt.subplots(figsize=(7, 4))
    batches = [1, 16, 64]
    width = 0.8 / len(rows)
    for i, row in enumerate(rows):
        xs = [j + i * width for j in range(len(batches))]
        label = f"{row['variant']} ({row['accuracy']:.2%}, {row['size_bytes'] / 1e6:.2f} MB)"
        ax.bar(xs, [row[f"images_per_s_batch{b}"] for b in batches], width, label=label)
    ax.set_xticks([j + width * (len(rows) - 1) / 2 for j in range(len(batches))])
    ax.set_xticklabels([f"batch {b}" for b in batches])
    ax.set_ylabel("images/s, in-process")
    ax.set_title("classifier variants (accuracy, size)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "variants.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    main()
