"""The Python steps' own metrics, served on Triton's /metrics beside Triton's (the Python
backend's metrics API), declared here once: the steps record them (StepMetrics, below), and
the tests, the fleet's Prometheus and `make soak` read them by these names.

Every metric carries the `model` label (the step that recorded it). A refused input counts
under its reason, a short fixed word from the exception (Refused.reason), never its message:
messages hold request data and would give Prometheus a new series for each request.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    kind: str  # COUNTER, GAUGE or HISTOGRAM, as pb_utils.MetricFamily names them
    description: str
    buckets: tuple[float, ...] = ()  # a histogram's upper bounds


REJECTED = Family(
    "maas_rejected_requests_total",
    "COUNTER",
    "Requests a Python step refused (INVALID_ARG), by model and reason",
)
FAILED = Family(
    "maas_failed_requests_total",
    "COUNTER",
    "Requests a Python step failed on an unexpected error (INTERNAL: a fault of the step, not "
    "of the input), by model and exception type",
)
IMAGE_PIXELS = Family(
    "maas_input_image_pixels",
    "HISTOGRAM",
    "Size of each input image as sent (width x height, before resizing)",
    buckets=tuple(float(side * side) for side in (32, 64, 128, 256, 512, 1024, 2048, 4096)),
)
PREDICTED = Family(
    "maas_predicted_class_total", "COUNTER", "Images classified, by model and top-1 label"
)
FORECASTS = Family("maas_forecasts_total", "COUNTER", "Series forecast, by model")
GENERATED = Family("maas_generated_images_total", "COUNTER", "PNG images made, by model")
SEQUENCES = Family(
    "maas_stream_sequences", "GAUGE", "Sequences a streaming model holds state for now"
)
FAMILIES = (REJECTED, FAILED, IMAGE_PIXELS, PREDICTED, FORECASTS, GENERATED, SEQUENCES)


class StepMetrics:
    """One step's metrics (the families above) through the Python backend's metrics API,
    each labelled with the step's model.

    Every metric call of that API is a round trip from the stub to the server: two a request
    cost 0.89x throughput at concurrency 16 (perf_analyzer, one image a request, two rounds).
    So requests only add to counts kept here, and a thread hands them to the server every
    FLUSH_S seconds: /metrics lags by up to that much."""

    FLUSH_S = 1.0

    def __init__(self, pb_utils, model: str):
        self._pb = pb_utils
        self.model = model
        self._families: dict[str, object] = {}
        self._metrics: dict[tuple, object] = {}
        self._lock = threading.Lock()
        self._counts: dict[tuple, float] = collections.defaultdict(float)
        self._observed: dict[tuple, list[float]] = collections.defaultdict(list)
        self._gauges: dict[tuple, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="maas-metrics", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def count(self, family: Family, value: float = 1, **labels: str) -> None:
        if value:
            with self._lock:
                self._counts[_key(family, labels)] += value

    def observe(self, family: Family, values: Iterable[float], **labels: str) -> None:
        with self._lock:
            self._observed[_key(family, labels)].extend(values)

    def set(self, family: Family, value: float, **labels: str) -> None:
        with self._lock:
            self._gauges[_key(family, labels)] = value

    def refused(self, error: Exception) -> None:
        self.count(REJECTED, reason=getattr(error, "reason", "invalid"))

    def failed(self, error: Exception) -> None:
        self.count(FAILED, error=type(error).__name__)

    def flush(self) -> None:
        """Hand what was recorded since the last flush to the server."""
        with self._lock:
            counts, self._counts = self._counts, collections.defaultdict(float)
            observed, self._observed = self._observed, collections.defaultdict(list)
            gauges, self._gauges = self._gauges, {}
        for key, value in counts.items():
            self._metric(key).increment(value)
        for key, values in observed.items():
            metric = self._metric(key)
            for value in values:
                metric.observe(float(value))
        for key, value in gauges.items():
            self._metric(key).set(value)

    def _run(self) -> None:
        while not self._stop.wait(self.FLUSH_S):
            try:
                self.flush()
            except Exception as e:  # the server went away (unload): nothing left to tell
                print(f"[maas] {self.model}: metrics not sent: {e}", flush=True)
                return

    def _metric(self, key: tuple):
        metric = self._metrics.get(key)
        if metric is None:
            family, labels = key[0], dict(key[1:])
            if family.name not in self._families:
                self._families[family.name] = self._pb.MetricFamily(
                    name=family.name,
                    description=family.description,
                    kind=getattr(self._pb.MetricFamily, family.kind),
                )
            extra = {"buckets": list(family.buckets)} if family.buckets else {}
            metric = self._families[family.name].Metric(
                labels={"model": self.model, **labels}, **extra
            )
            self._metrics[key] = metric
        return metric


def _key(family: Family, labels: dict[str, str]) -> tuple:
    return (family, *sorted(labels.items()))
