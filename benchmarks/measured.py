"""What a load run measured (Result), and its two forms: a CSV row with perf_analyzer's `-f`
columns where they apply (latencies in microseconds) plus ours, and one line for a terminal;
and what the server did meanwhile (Triton's statistics, its processes' CPU), as differences of
two readings.
"""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass, field
from pathlib import Path

PERF_ANALYZER_COLUMNS = [
    "Concurrency", "Inferences/Second", "Client Send", "Network+Server Send/Recv",
    "Server Queue", "Server Compute Input", "Server Compute Infer", "Server Compute Output",
    "Client Recv", "p50 latency", "p90 latency", "p95 latency", "p99 latency", "Avg latency",
    "request/response", "response wait",
]  # fmt: skip


@dataclass
class Result:
    target: str
    model: str
    mode: str  # concurrency | rate
    value: float
    images_per_request: int
    requests: int
    errors: int
    images_per_s: float
    p50_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    avg_ms: float
    stable: bool
    windows: int
    client_cpu_cores: float  # all client processes together, during the run
    client_cpu_max_process: float  # the busiest client process, fraction of one core
    server: dict = field(default_factory=dict)  # model -> per-request averages (us), counts
    server_cpu: dict = field(default_factory=dict)  # tritonserver / "<model> stubs" -> cores

    @property
    def client_bound(self) -> bool:
        return self.client_cpu_max_process > 0.85


def csv_row(r: Result) -> dict:
    """perf_analyzer's -f columns where they apply (us), then ours."""
    names = ("queue", "compute_input", "compute_infer", "compute_output")
    # An ensemble's own entry already adds up its steps: count the steps, as perf_analyzer does.
    steps = {k: v for k, v in r.server.items() if k != r.model} or r.server
    phases = {p: sum(m[f"{p}_us"] for m in steps.values()) for p in names}
    row = dict.fromkeys(PERF_ANALYZER_COLUMNS, "")
    row.update({
        "Concurrency" if r.mode == "concurrency" else "Request Rate": r.value,
        "Inferences/Second": round(r.images_per_s, 2),
        "p50 latency": round(r.p50_ms * 1e3), "p90 latency": round(r.p90_ms * 1e3),
        "p95 latency": round(r.p95_ms * 1e3), "p99 latency": round(r.p99_ms * 1e3),
        "Avg latency": round(r.avg_ms * 1e3),
    })  # fmt: skip
    if r.server:  # summed over the models that served the request, as perf_analyzer does
        for column, phase in zip(PERF_ANALYZER_COLUMNS[4:8], names, strict=True):
            row[column] = round(phases[phase])
    extra = asdict(r)
    extra.pop("server")
    cpu = {f"cpu {group} (cores)": round(v, 3) for group, v in extra.pop("server_cpu").items()}
    return {**row, **extra, **cpu}


def write_csv(results: list[Result], path: Path) -> None:
    rows = [csv_row(r) for r in results]
    columns = list(dict.fromkeys(k for row in rows for k in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def describe(r: Result) -> str:
    text = (
        f"{r.target:<28} {r.mode[:4]} {r.value:>6g}  {r.images_per_s:>8.1f} img/s  "
        f"p50 {r.p50_ms:6.2f}  p99 {r.p99_ms:7.2f} ms  errors {r.errors}  "
        f"client cpu {r.client_cpu_cores:.2f} cores{'' if r.stable else '  (unstable)'}"
    )
    if r.client_bound:
        text += (
            "\n  WARNING: a client process used >85% of a core: the client, not the server, "
            "may be the bottleneck; add --processes"
        )
    return text


def triton_stats(url: str) -> dict[str, dict]:
    """Cumulative statistics of every model, by name, from Triton's statistics API."""
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    scheme, address = url.split("://", 1)
    module = grpcclient if scheme == "grpc" else httpclient
    client = module.InferenceServerClient(address)
    try:
        kwargs = {"as_json": True} if scheme == "grpc" else {}
        stats = client.get_inference_statistics(**kwargs)
    finally:
        client.close()
    return {f"{m['name']}:{m['version']}": m for m in stats.get("model_stats", [])}


def cpu_seconds(server_pid: int) -> dict[str, float]:
    """CPU seconds (user + system) so far of tritonserver `server_pid` and of its Python
    stubs, summed per model ("<model> stubs")."""
    import psutil

    from maas.processes import stubs

    groups = {"tritonserver": [server_pid]}
    groups.update({f"{model} stubs": pids for model, pids in sorted(stubs(server_pid).items())})
    seconds = {}
    for group, pids in groups.items():
        seconds[group] = 0.0
        for pid in pids:
            try:
                times = psutil.Process(pid).cpu_times()
            except psutil.Error:  # gone meanwhile
                continue
            seconds[group] += times.user + times.system
    return seconds


def cpu_delta(before: dict[str, float], after: dict[str, float], seconds: float) -> dict:
    """Cores each group of cpu_seconds kept busy between two readings `seconds` apart (a stub
    started meanwhile counts from 0: clamped, not negative)."""
    return {g: max(0.0, t - before.get(g, 0.0)) / seconds for g, t in after.items()}


def stats_delta(before: dict, after: dict) -> dict[str, dict]:
    """Per model that ran: request count, executions, and average us per request per phase."""
    out = {}
    for key, b in after.items():
        a = before.get(key, {})
        get = lambda s, *path: int(  # noqa: E731 - a two-level lookup with defaults
            s.get("inference_stats", {}).get(path[0], {}).get(path[1], 0)
        )
        count = get(b, "success", "count") - get(a, "success", "count")
        if count <= 0:
            continue
        row = {
            "requests": count,
            "inferences": int(b.get("inference_count", 0)) - int(a.get("inference_count", 0)),
            "executions": int(b.get("execution_count", 0)) - int(a.get("execution_count", 0)),
        }
        for phase in ("queue", "compute_input", "compute_infer", "compute_output"):
            row[f"{phase}_us"] = (get(b, phase, "ns") - get(a, phase, "ns")) / count / 1e3
        out[key.rsplit(":", 1)[0]] = row
    return out
