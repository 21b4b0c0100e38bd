"""Side by side, in one run, on this machine, with the same held-out images:

  (a) the served ensemble over gRPC and over HTTP
  (b) the same pipeline in-process, batched: one worker per core (the ceiling) and one process
  (c) a naive FastAPI + ONNX Runtime server (benchmarks/naive_server.py)
  (d) dynamic batching off vs on; preprocess/postprocess instances 1 vs 2; 1 vs 8 images/request
  (e) ensemble vs BLS vs preprocessing on the client (tensors to the classifier), and where the
      time goes, per step, from Triton's statistics
  (f) the floor: an ensemble of three empty Python steps (maas.benchmarks.floor)
  and, where they are at hand, the classifier on Triton's onnxruntime backend (--backend-dir /
  MAAS_BACKEND_DIR) and Triton's perf_analyzer measuring the same server and scenario right
  after our load generator ("[perf_analyzer]" rows)

    python -m maas.benchmarks.compare          # or: make bench  (~5 minutes on 2 cores)

Writes benchmarks/results/compare.csv (perf_analyzer columns + ours), compare.png (throughput
against p99 latency per configuration, with (b) and (c)) and compare.md (the summary, with
ratios to (b) and (c)).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tritonclient.grpc import model_config_pb2 as mc

from maas.access import Ports
from maas.backends import backend_dir_default, has_native_backend
from maas.benchmarks import floor, inprocess
from maas.benchmarks.load import (
    Target,
    load_images,
    run_load,
    tensor_spec,
)
from maas.benchmarks.measured import Result, cpu_delta, cpu_seconds
from maas.benchmarks.perf_analyzer_inputs import find_perf_analyzer, run_perf_analyzer
from maas.benchmarks.report import FLOOR, NATIVE, PA
from maas.build.configs import read_config, write_config
from maas.runtime import names as C
from maas.serve import ServerConfig, TritonServer
from maas.training.checkpoint import Checkpoint

BLS = "image_classifier_bls"


def edit_configs(repo: Path, edit) -> None:
    for path in repo.glob("*/config.pbtxt"):
        config = read_config(path)
        edit(config)
        write_config(path, config)


def no_dynamic_batching(config: mc.ModelConfig) -> None:
    config.ClearField("dynamic_batching")


def instances(pre_post: int):
    def edit(config: mc.ModelConfig) -> None:
        if config.name in (C.PREPROCESS, C.POSTPROCESS):
            for group in config.instance_group:
                group.count = pre_post

    return edit


def add_bls(repo: Path) -> None:
    ensemble = read_config(repo / C.ENSEMBLE / "config.pbtxt")
    config = mc.ModelConfig(
        name=BLS,
        backend="python",
        max_batch_size=ensemble.max_batch_size,
        input=ensemble.input,
        output=ensemble.output,
        dynamic_batching=mc.ModelDynamicBatching(),
        instance_group=[mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)],
    )
    (repo / BLS / "1").mkdir(parents=True)
    shutil.copy2(Path(__file__).with_name("bls") / "model.py", repo / BLS / "1" / "model.py")
    write_config(repo / BLS / "config.pbtxt", config)


# From this concurrency up, two client processes: one reads 0.82x perf_analyzer's throughput
# at c=64 on 2 cores (0.55 of a core busy in the client), two 0.84-0.97x; at c=16 one agrees.
MANY = 64


class Run:
    """Collects results, each tagged with the scenario that produced it."""

    def __init__(self, images, spec, window):
        self.images, self.spec, self.window = images, spec, window
        self.results: list[tuple[str, Result]] = []
        self.perf_analyzer = find_perf_analyzer()

    def load(self, scenario, target: Target, concurrency, stats_url=None, server_pid=None):
        for c in concurrency:
            r = run_load(
                target,
                self.images,
                concurrency=c,
                processes=2 if c >= MANY else 1,
                window_s=self.window,
                stats_url=stats_url,
                spec=self.spec if target.tensors else None,
                server_pid=server_pid,
            )
            self._add(scenario, r, r.client_bound)

    def _add(self, scenario: str, r: Result, client_bound: bool = False) -> None:
        self.results.append((scenario, r))
        print(
            f"  {scenario:<34} c={r.value:<3g} {r.images_per_s:8.1f} img/s  p50 {r.p50_ms:6.2f}"
            f"  p99 {r.p99_ms:7.2f} ms  errors {r.errors}"
            f"{'  CLIENT-BOUND' if client_bound else ''}",
            flush=True,
        )

    def perf(self, scenario, url: str, model: str, input_data, concurrency, server_pid) -> None:
        """The same scenario measured by Triton's perf_analyzer (where it is installed), with
        its CPU and the server's over its whole run (warm-up and trials: all at load)."""
        if self.perf_analyzer is None:
            return
        for c in concurrency:
            client0 = resource.getrusage(resource.RUSAGE_CHILDREN)
            server0, started = cpu_seconds(server_pid), time.monotonic()
            try:
                row = run_perf_analyzer(self.perf_analyzer, model, url, input_data, c)
            except RuntimeError as e:  # e.g. no stable measurement: say so, keep the run
                print(f"  {scenario + PA:<34} c={c:<3} {str(e).splitlines()[-1]}", flush=True)
                continue
            wall = time.monotonic() - started
            client1, server1 = resource.getrusage(resource.RUSAGE_CHILDREN), cpu_seconds(server_pid)
            r = perf_analyzer_result(scenario, model, row, c)
            r.client_cpu_cores = r.client_cpu_max_process = (
                client1.ru_utime + client1.ru_stime - client0.ru_utime - client0.ru_stime
            ) / wall
            r.server_cpu = cpu_delta(server0, server1, wall)
            self._add(scenario + PA, r)

    def serve(self, repo: Path, scenarios, backend_dir: Path | None = None):
        with TritonServer(repo, ServerConfig(backend_dir=backend_dir)) as server:
            grpc, http = f"grpc://{server.grpc_url}", f"http://{server.http_url}"
            for scenario, target_args, concurrency, *perf in scenarios(grpc, http):
                self.load(scenario, Target(**target_args), concurrency, grpc, server.process.pid)
                if perf:  # (perf_analyzer input data): measure it with perf_analyzer too
                    model = target_args.get("model", C.ENSEMBLE)
                    self.perf(
                        scenario, server.grpc_url, model, perf[0], concurrency, server.process.pid
                    )


# perf_analyzer's CSV splits its average latency into these (microseconds); they add up to it.
AVERAGE_PARTS = ("Client Send", "Network+Server Send/Recv", "Server Queue", "Server Compute Input",
                 "Server Compute Infer", "Server Compute Output", "Client Recv")  # fmt: skip


def perf_analyzer_result(scenario: str, model: str, row: dict, concurrency: int) -> Result:
    """perf_analyzer's CSV row as our Result (its latencies are microseconds; CPU: NaN until
    the caller fills it in)."""

    def ms(column: str) -> float:
        return int(row[column]) / 1e3

    return Result(
        target=scenario + PA, model=model, mode="concurrency", value=concurrency,
        images_per_request=1, requests=0, errors=0,
        images_per_s=float(row["Inferences/Second"]), p50_ms=ms("p50 latency"),
        p90_ms=ms("p90 latency"), p95_ms=ms("p95 latency"), p99_ms=ms("p99 latency"),
        avg_ms=sum(ms(c) for c in AVERAGE_PARTS), stable=True, windows=0,
        client_cpu_cores=float("nan"), client_cpu_max_process=float("nan"),
    )  # fmt: skip


def naive(run: Run, onnx: Path, checkpoint: Path, concurrency) -> None:
    port = Ports.free().http
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "maas.benchmarks.naive_server",
            "--onnx",
            str(onnx),
            "--checkpoint",
            str(checkpoint),
            "--port",
            str(port),
        ],
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        run.load("(c) naive FastAPI", Target(f"naive+http://127.0.0.1:{port}"), concurrency)
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def main(argv: list[str] | None = None) -> None:
    from maas.benchmarks.report import write_report

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repository", type=Path, default=Path("model_repository"), help="built")
    ap.add_argument("--checkpoint", type=Path, default=Path("artifacts/checkpoint.pt"))
    ap.add_argument("--onnx", type=Path, default=Path("artifacts/model.onnx"))
    ap.add_argument("--window", type=float, default=1.0)
    ap.add_argument("--seconds", type=float, default=3.0, help="per in-process measurement")
    ap.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    ap.add_argument("--quick", action="store_true", help="fewer points (for tests)")
    ap.add_argument("--backend-dir", type=Path, default=backend_dir_default())
    ap.add_argument("--perf-analyzer-inputs", type=Path, default=Path("benchmarks/perf_analyzer"))
    args = ap.parse_args(argv)

    ckpt = Checkpoint.load(args.checkpoint)
    images = load_images(args.checkpoint)
    run = Run(images, tensor_spec(args.checkpoint), args.window)
    cores = os.cpu_count() or 1
    low, high = ([1, 16], [16]) if args.quick else ([1, 16, 64], [16, 64])

    print("(b) in-process pipeline")
    spec, labels = ckpt.preprocessing(), ckpt.class_names
    ceiling = {
        (p, b): inprocess.throughput(args.onnx, spec, labels, images, b, p, args.seconds)
        for p in sorted({1, cores})
        for b in (1, 8, 64)
    }
    latency = inprocess.latency_ms(args.onnx, spec, labels, images)
    for (p, b), c in ceiling.items():
        print(f"  {p} process(es), batch {b:>2}: {c.images_per_s:8.1f} img/s")
    print(f"  one image, one process: p50 {latency:.3f} ms")
    steps = inprocess.step_times_ms(args.onnx, spec, labels, images)

    print("(a, d, e) the served pipeline")

    pa_images = args.perf_analyzer_inputs / "ensemble_inputs.json"
    if run.perf_analyzer and not pa_images.is_file():
        from maas.benchmarks.perf_analyzer_inputs import main as write_inputs

        write_inputs(["--checkpoint", str(args.checkpoint), "--out", str(pa_images.parent)])

    def main_scenarios(grpc, http):
        yield "(a) ensemble gRPC", {"url": grpc}, low, pa_images
        yield "(a) ensemble HTTP", {"url": http}, low
        yield "(d) ensemble gRPC, 8 images/request", {"url": grpc, "batch": 8}, [1, 16]
        yield (
            "(e) client preprocessing, gRPC",
            {"url": grpc, "model": C.CLASSIFIER, "tensors": True},
            [1, 16],
        )

    run.serve(args.repository, main_scenarios)
    if has_native_backend(args.backend_dir):

        def native_scenarios(grpc, http):
            yield "(a) ensemble gRPC" + NATIVE, {"url": grpc}, low, pa_images
            yield "(d) ensemble gRPC, 8 images/request" + NATIVE, {"url": grpc, "batch": 8}, [1, 16]

        run.serve(args.repository, native_scenarios, backend_dir=args.backend_dir)
    with tempfile.TemporaryDirectory(prefix="maas-floor-") as tmp:
        floor_run = Run([floor.request()], None, args.window)
        floor_run.perf_analyzer = run.perf_analyzer
        floor_run.serve(
            floor.write_floor(Path(tmp) / "floor"),
            lambda grpc, http: [(FLOOR, {"url": grpc, "model": floor.FLOOR, "payload": True},
                                 [1, 16], "zero")],
        )  # fmt: skip
        run.results += floor_run.results
    with tempfile.TemporaryDirectory(prefix="maas-compare-") as tmp:
        configs = {p.parent.name: read_config(p) for p in args.repository.glob("*/config.pbtxt")}
        current = configs[C.PREPROCESS].instance_group[0].count
        other = 2 if current == 1 else 1
        variants = [
            ("no-batching", no_dynamic_batching, "(d) dynamic batching off"),
            (f"inst{other}", instances(other), f"(d) pre/post instances {other} (tuned {current})"),
        ]
        for name, edit, label in variants:
            repo = Path(tmp) / name
            shutil.copytree(args.repository, repo)
            edit_configs(repo, edit)
            run.serve(repo, lambda grpc, http, label=label: [(label, {"url": grpc}, high)])
        repo = Path(tmp) / "bls"
        shutil.copytree(args.repository, repo)
        add_bls(repo)
        run.serve(repo, lambda grpc, http: [("(e) BLS gRPC", {"url": grpc, "model": BLS}, low)])

    print("(c) naive server")
    naive(run, args.onnx, args.checkpoint, low)
    write_report(run.results, ceiling, latency, steps, args.out, cores)


if __name__ == "__main__":
    main()
