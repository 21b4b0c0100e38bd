"""Where one request's time goes, from Triton's own traces rather than guesses.

    python -m maas.benchmarks.trace            # or: make trace
    python -m maas.benchmarks.trace --before /tmp/old_repository

Each scenario serves a repository with tracing on (`--trace-config level=TIMESTAMPS`, every
request), sends --requests requests one at a time over gRPC (the pipeline's probe input: see
maas.probe), stops the server (Triton writes the trace file then) and reads the timestamps.
Per request: gRPC read to request start; per step, queue (request start to compute start),
compute input, compute infer (for a Python step: the IPC to its stub and model.py's execute)
and compute output (up to where the next step starts: Triton passes outputs on before a step's
COMPUTE_END); the ensemble's own share (from one step's end to the next one's start); and the
response to the end of the gRPC send. Means, in microseconds, so the stages add up to
the total; the median total beside them.

Scenarios: the repository as built (core models on the Python backend), the same natively
(where --backend-dir / MAAS_BACKEND_DIR has Triton's onnxruntime backend), the empty-step
floor (maas.benchmarks.floor), and --before (another repository, e.g. an older build).
Writes benchmarks/results/trace.{csv,md,png}.
"""

from __future__ import annotations

import argparse
import collections
import json
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from maas.runtime import names as C


@dataclass
class Breakdown:
    """One scenario's mean microseconds per stage, in request order, and the median total."""

    scenario: str
    stages: dict[str, float] = field(default_factory=dict)
    p50_total_us: float = 0.0
    requests: int = 0


def trace_args(path: Path) -> tuple[str, ...]:
    """tritonserver options that trace every request's timestamps into `path` (JSON)."""
    return tuple(
        arg
        for setting in (f"triton,file={path}", "level=TIMESTAMPS", "rate=1", "count=-1")
        for arg in ("--trace-config", setting)
    )


def read_trace(path: Path) -> dict[int, dict]:
    """Triton's trace file -> trace id -> {"model_name", "parent_id"?, "ts": {name: ns}}."""
    records: dict[int, dict] = collections.defaultdict(dict)
    for entry in json.loads(path.read_text()):
        record = records[entry["id"]]
        for key, value in entry.items():
            if key == "timestamps":
                record.setdefault("ts", {}).update({t["name"]: t["ns"] for t in value})
            elif key != "id":
                record[key] = value
    return dict(records)


def breakdown(records: dict[int, dict], model: str, last: int, scenario: str = "") -> Breakdown:
    """The stages of the `last` top-level requests to `model` (earlier ones: warm-up)."""
    children = collections.defaultdict(list)
    for record in records.values():
        if "parent_id" in record:
            children[record["parent_id"]].append(record)
    tops = sorted(
        (i for i, r in records.items() if r.get("model_name") == model and "parent_id" not in r)
    )[-last:]
    if not tops:
        raise ValueError(f"no traced request to {model}")
    stages: dict[str, list[int]] = collections.defaultdict(list)
    totals = []
    for i in tops:
        ts = records[i]["ts"]
        done = ts.get("INFER_RESPONSE_COMPLETE", ts["REQUEST_END"])
        start = ts.get("GRPC_WAITREAD_END", ts["REQUEST_START"])
        end = ts.get("GRPC_SEND_END", done)
        stages["gRPC read -> request"].append(ts["REQUEST_START"] - start)
        steps = sorted(children.get(i, []), key=lambda r: r["ts"]["REQUEST_START"])
        steps = steps or [records[i]]  # a model called directly is its own one step
        starts = [s["ts"]["REQUEST_START"] for s in steps[1:]] + [done]
        between = steps[0]["ts"]["REQUEST_START"] - ts["REQUEST_START"]
        for step, following in zip(steps, starts, strict=True):
            t, name = step["ts"], step["model_name"]
            # The next step starts as soon as this one's outputs are sent, before its own
            # COMPUTE_END: the overlap counts once, as this step's output.
            stop = min(t["COMPUTE_END"], following)
            stages[f"{name}: queue"].append(t["COMPUTE_START"] - t["REQUEST_START"])
            stages[f"{name}: input"].append(t["COMPUTE_INPUT_END"] - t["COMPUTE_START"])
            stages[f"{name}: infer"].append(t["COMPUTE_OUTPUT_START"] - t["COMPUTE_INPUT_END"])
            stages[f"{name}: output"].append(stop - t["COMPUTE_OUTPUT_START"])
            between += following - stop
        stages["ensemble scheduling"].append(between)
        stages["response -> gRPC sent"].append(end - done)
        totals.append(end - start)
    return Breakdown(
        scenario,
        {k: statistics.fmean(v) / 1e3 for k, v in stages.items()},
        statistics.median(totals) / 1e3,
        len(tops),
    )


def traced(
    repository: Path,
    model: str,
    request: dict,
    n: int,
    scenario: str,
    backend_dir: Path | None = None,
    warmup: int = 50,
) -> Breakdown:
    """Serve `repository` traced, send `warmup` + `n` requests one at a time, break them down."""
    import tritonclient.grpc as grpcclient

    from maas.clients.tensors import infer_inputs
    from maas.serve import ServerConfig, TritonServer

    with tempfile.TemporaryDirectory(prefix="maas-trace-") as tmp:
        path = Path(tmp) / "trace.json"
        config = ServerConfig(extra_args=tuple(trace_args(path)), backend_dir=backend_dir)
        server = TritonServer(repository, config)
        with server:
            client = grpcclient.InferenceServerClient(server.grpc_url)
            try:
                for _ in range(warmup + n):
                    client.infer(model, infer_inputs(grpcclient, request))
            finally:
                client.close()
        return breakdown(read_trace(path), model, n, scenario)


def write_results(results: list[Breakdown], out: Path) -> str:
    """trace.csv (scenario, stage, mean us), trace.md (stages x scenarios) and trace.png."""
    out.mkdir(parents=True, exist_ok=True)
    order = list(dict.fromkeys(stage for r in results for stage in r.stages))
    with (out / "trace.csv").open("w") as f:
        f.write("scenario,stage,mean_us\n")
        for r in results:
            for stage, us in r.stages.items():
                f.write(f"{r.scenario},{stage},{us:.1f}\n")
            f.write(f"{r.scenario},p50 total,{r.p50_total_us:.1f}\n")
    rows = [
        "| stage (mean us) | " + " | ".join(r.scenario for r in results) + " |",
        "|---" * (len(results) + 1) + "|",
    ]
    for stage in order:
        cells = (f"{r.stages[stage]:,.0f}" if stage in r.stages else "" for r in results)
        rows.append(f"| {stage} | " + " | ".join(cells) + " |")
    rows.append("| **sum of means** | " + " | ".join(
        f"**{sum(r.stages.values()):,.0f}**" for r in results) + " |")  # fmt: skip
    rows.append("| **p50 total** | " + " | ".join(
        f"**{r.p50_total_us:,.0f}**" for r in results) + " |")  # fmt: skip
    table = "\n".join(rows)
    (out / "trace.md").write_text(
        "# Where a request's time goes (Triton traces, one request at a time, gRPC)\n\n"
        f"{results[0].requests} traced requests per scenario after a warm-up; reproduce with "
        "`make trace`.\n\n" + table + "\n"
    )
    _plot(results, order, out / "trace.png")
    return table


def _plot(results: list[Breakdown], order: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = list(dict.fromkeys(s.split(":")[0] for s in order))  # step names and the rest
    fig, ax = plt.subplots(figsize=(10, 1.2 + 0.6 * len(results)))
    colours = plt.cm.tab20.colors
    for row, r in enumerate(results):
        left = 0.0
        for stage in order:
            width = r.stages.get(stage, 0.0)
            colour = colours[groups.index(stage.split(":")[0]) * 2 % 20 + ("infer" in stage)]
            ax.barh(row, width, left=left, color=colour, edgecolor="white")
            if width > 150 and ": " in stage:  # a step's phase, where it fits
                ax.text(left + width / 2, row, stage.split(": ")[-1], ha="center",
                        va="center", fontsize=7)  # fmt: skip
            left += width
    ax.set_yticks(range(len(results)), [r.scenario for r in results])
    ax.invert_yaxis()
    ax.set_xlabel("microseconds (means; stages in request order)")
    ax.set_title("One request through the pipeline, from Triton's trace timestamps")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[i * 2 % 20]) for i in range(len(groups))]
    ax.legend(handles, groups, fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> list[Breakdown]:
    from maas.backends import backend_dir_default, has_native_backend
    from maas.benchmarks.floor import FLOOR, request, write_floor
    from maas.probe import probe_requests

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repository", type=Path, default=Path("model_repository"), help="built")
    ap.add_argument("--model", default=C.ENSEMBLE, help="the pipeline to trace")
    ap.add_argument("--before", type=Path, help="another repository to trace beside it")
    ap.add_argument("--backend-dir", type=Path, default=backend_dir_default())
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = ap.parse_args(argv)

    probe = probe_requests(args.repository)[args.model]
    scenarios = []
    if args.before:
        scenarios.append(("before", args.before, None))
    scenarios.append(("Python backend", args.repository, None))
    if has_native_backend(args.backend_dir):
        scenarios.append(("onnxruntime backend", args.repository, args.backend_dir))
    results = []
    for label, repo, backends in scenarios:
        print(f"tracing {args.model}: {label} ({repo})", flush=True)
        results.append(traced(repo, args.model, probe, args.requests, label, backends))
    with tempfile.TemporaryDirectory(prefix="maas-floor-") as tmp:
        print("tracing the empty-step floor", flush=True)
        floor = write_floor(Path(tmp) / "floor")
        results.append(traced(floor, FLOOR, request(), args.requests, "empty steps (floor)"))
    print(write_results(results, args.out))
    return results


if __name__ == "__main__":
    main()
