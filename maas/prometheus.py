"""Prometheus for a fleet: the scrape config `maas fleet up` writes beside its state, and a
Prometheus (the Debian package) run as our child for tests and `make soak`.

    prometheus --config.file=.maas-fleet/prometheus.yml     # what an operator runs

Each replica's /metrics is one target, labelled with its replica number: Triton's own metrics
and the Python steps' (maas.runtime.metrics) come from the same endpoint.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path

from maas.processes import die_with_parent
from maas.processes import stop as stop_process

INSTALL = "sudo apt-get update && sudo apt-get install -y prometheus"


def find_prometheus() -> str | None:
    return shutil.which("prometheus") or (
        "/usr/bin/prometheus" if Path("/usr/bin/prometheus").is_file() else None
    )


def scrape_config(metrics: list[str], interval_s: float = 5.0) -> str:
    """prometheus.yml scraping every replica's metrics endpoint (HOST:PORT, in replica
    order). JSON is YAML, and json.dumps quotes whatever needs quoting."""
    config = {
        "global": {"scrape_interval": f"{interval_s:g}s", "evaluation_interval": "15s"},
        "scrape_configs": [
            {
                "job_name": "triton",
                "metrics_path": "/metrics",
                "static_configs": [
                    {"targets": [target], "labels": {"replica": str(i)}}
                    for i, target in enumerate(metrics)
                ],
            }
        ],
    }
    return json.dumps(config, indent=2) + "\n"


def scrape(target: str) -> dict[tuple, float]:
    """One read of a metrics endpoint (HOST:PORT): (sample name, sorted label pairs) -> value.
    Counters' samples are named *_total, as the text format's parser names them."""
    from prometheus_client.parser import text_string_to_metric_families  # dev/bench extra

    with urllib.request.urlopen(f"http://{target}/metrics", timeout=10) as r:
        text = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape_until(target: str, done, timeout_s: float = 10.0) -> dict[tuple, float]:
    """A scrape of `target` for which done(scrape) holds, or the last one after `timeout_s`
    (the Python steps hand their counts over every StepMetrics.FLUSH_S): a caller's asserts
    on it then say what is missing."""
    deadline = time.monotonic() + timeout_s
    while True:
        now = scrape(target)
        if done(now) or time.monotonic() > deadline:
            return now
        time.sleep(0.2)


class Prometheus:
    """A Prometheus on 127.0.0.1:`port` with a throwaway database; stopped by its pid."""

    def __init__(self, config: Path, port: int):
        self.config = Path(config)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.process: subprocess.Popen | None = None
        self._data: tempfile.TemporaryDirectory | None = None

    def start(self, timeout: float = 30.0) -> Prometheus:
        binary = find_prometheus()
        if binary is None:
            raise RuntimeError(f"prometheus is not installed; install it with: {INSTALL}")
        self._data = tempfile.TemporaryDirectory(prefix="maas-prometheus-")
        self.process = subprocess.Popen(
            [binary, f"--config.file={self.config}", f"--web.listen-address=127.0.0.1:{self.port}",
             f"--storage.tsdb.path={self._data.name}", "--log.level=warn"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"prometheus exited: {self.process.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"prometheus not ready in {timeout:g} s")
            time.sleep(0.2)

    def query(self, expr: str, at: float | None = None) -> list[dict]:
        """An instant PromQL query: the result's series ({"metric": labels, "value": [t, v]})."""
        params = {"query": expr, **({"time": f"{at:.3f}"} if at is not None else {})}
        return self._get("query", params)["result"]

    def query_range(self, expr: str, start: float, end: float, step_s: float) -> list[dict]:
        """A range query: each series' ({"metric": labels, "values": [[t, v], ...]})."""
        params = {"query": expr, "start": start, "end": end, "step": f"{step_s:g}"}
        return self._get("query_range", params)["result"]

    def targets(self) -> list[dict]:
        return self._get("targets", {})["activeTargets"]

    def _get(self, path: str, params: dict) -> dict:
        url = f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = json.loads(r.read())
        if body.get("status") != "success":
            raise RuntimeError(f"prometheus {path}: {body}")
        return body["data"]

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process)
        self.process = None
        if self._data is not None:
            self._data.cleanup()
            self._data = None

    def __enter__(self) -> Prometheus:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
