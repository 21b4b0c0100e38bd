"""What the front door's guard costs a request: straight to tritonserver, through nginx with the
guard of an earlier commit, and through nginx with today's, side by side in one run.

    python -m maas.benchmarks.guard                      # today's against HEAD's
    python -m maas.benchmarks.guard --ref bc22e85 --seconds 4

The forecaster (a 60-value HISTORY sent as JSON: what the guard parses) on one server of its
own; each target is measured twice, alternating, at 1 request in flight (the guard's latency)
and 16 (its throughput). Writes benchmarks/results/guard.md.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

from maas.access import Ports
from maas.balancer import GUARD, TEMP_KINDS, TEMPLATE, Balancer, http_ok, render, require_nginx
from maas.benchmarks.admission import RESULTS, copy_models
from maas.benchmarks.loops import closed_loop
from maas.processes import stop
from maas.runtime import names as C
from maas.serve import TritonServer

MODELS = (C.FORECASTER, C.FORECASTER_PREPROCESS, C.FORECASTER_RNN, C.FORECASTER_POSTPROCESS)
HISTORY = np.sin(np.arange(60) / 5).astype(np.float32)[None]


def make(tc, n):
    t = tc.InferInput(C.HISTORY, list(HISTORY.shape), "FP32")
    t.set_data_from_numpy(HISTORY, binary_data=False)
    return [t]


def at_ref(ref: str, folder: Path) -> tuple[Path, Path]:
    """guard.js and nginx.conf.j2 as they were at `ref`, in `folder`."""
    for name in ("guard.js", "nginx.conf.j2"):
        text = subprocess.run(["git", "show", f"{ref}:maas/{name}"], capture_output=True,
                              text=True, check=True).stdout  # fmt: skip
        (folder / name).write_text(text)
    return folder / "guard.js", folder / "nginx.conf.j2"


def start_nginx(replica: Ports, guard: Path, template: Path, folder: Path):
    binary, module = require_nginx()
    for kind in TEMP_KINDS:
        (folder / "tmp" / kind).mkdir(parents=True, exist_ok=True)
    ports = Ports.free()
    lb = Balancer(http=ports.http, grpc=ports.grpc)
    conf = render([replica], lb, js_module=module, scratch=folder / "tmp", guard_dir=guard.parent,
                  pid=str(folder / "nginx.pid"), error_log=str(folder / "error.log"),
                  template=template)  # fmt: skip
    (folder / "nginx.conf").write_text(conf)
    process = subprocess.Popen([binary, "-c", str(folder / "nginx.conf"), "-p", str(folder)],
                               stderr=subprocess.DEVNULL)  # fmt: skip
    deadline = time.monotonic() + 10
    while not http_ok(f"http://127.0.0.1:{ports.http}/v2/health/ready"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"nginx did not start: {(folder / 'error.log').read_text()}")
        time.sleep(0.1)
    return process, f"127.0.0.1:{ports.http}"


def run(repository: Path, ref: str, seconds: float, rounds: int) -> dict:
    results: dict[str, dict[int, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        repo = copy_models(repository, MODELS, tmp / "repo", None)
        (tmp / "old").mkdir()
        old_guard, old_template = at_ref(ref, tmp / "old")
        with TritonServer(repo) as server:
            doors = [(f"guard at {ref}", old_guard, old_template, tmp / "n-old"),
                     ("guard now", GUARD, TEMPLATE, tmp / "n-new")]  # fmt: skip
            started = [(label, *start_nginx(server.ports, g, t, f)) for label, g, t, f in doors]
            targets = [("tritonserver, no guard", None, server.http_url), *started]
            try:
                for _ in range(rounds):
                    for label, _, url in targets:
                        for flight in (1, 16):
                            got = asyncio.run(closed_loop(url, C.FORECASTER, make, flight,
                                                          seconds, "http"))  # fmt: skip
                            assert not got.failed and not got.refused, label
                            runs = results.setdefault(label, {}).setdefault(flight, [])
                            runs.append(len(got.answered) / got.seconds)
                            runs.append(float(np.mean(got.answered)) * 1e6)
                            print(f"{label}, {flight} in flight: {runs[-2]:.0f}/s, "
                                  f"mean {runs[-1]:.0f} us", flush=True)  # fmt: skip
            finally:
                for _, process, _ in started:
                    stop(process)
    return results


def write(results: dict, out: Path, ref: str, seconds: float) -> None:
    out.mkdir(parents=True, exist_ok=True)
    base = results["tritonserver, no guard"]
    lines = ["# The guard's cost per request (benchmarks/guard.py)", "",
             f"The forecaster, a 60-value HISTORY as JSON, over HTTP; closed loops of "
             f"{seconds:g} s, each target measured alternately, means of the runs. Cost: the "
             "mean latency at 1 in flight minus the server's own, straight.", "",
             "| target | 1 in flight: requests/s | mean us | cost us | 16 in flight: requests/s "
             "| vs no guard |", "|---|---|---|---|---|---|"]  # fmt: skip

    def mean(runs, i):  # runs alternate throughput, latency
        return float(np.mean(runs[i::2]))

    for label, by in results.items():
        lines.append(
            f"| {label} | {mean(by[1], 0):.0f} | {mean(by[1], 1):.0f} | "
            f"{mean(by[1], 1) - mean(base[1], 1):.0f} | {mean(by[16], 0):.0f} | "
            f"{mean(by[16], 0) / mean(base[16], 0):.2f}x |"
        )
    lines += ["", f"`{ref}` is the commit before the guard re-serialised what it forwards "
              "(it passed the client's body on as it was).", ""]  # fmt: skip
    (out / "guard.md").write_text("\n".join(lines))
    print(f"wrote {out / 'guard.md'}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repository", type=Path, default=Path("model_repository"))
    ap.add_argument("--ref", default="HEAD", help="the commit whose guard is the baseline")
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args(argv)
    if shutil.which("git") is None:
        raise SystemExit("git is needed to read the baseline guard")
    write(run(args.repository, args.ref, args.seconds, args.rounds), args.out, args.ref,
          args.seconds)  # fmt: skip


if __name__ == "__main__":
    main()
