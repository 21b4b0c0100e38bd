"""What the Python-backend adapters in model_repository/ share.

    self.metrics = StepMetrics(pb_utils, args["model_name"])
    responses = answer_each(pb_utils, requests, self._answer, SeriesError, C.HISTORY, self.metrics)

Triton hands a model every request of a dynamic batch at once; each must get its own response,
and a request the pure functions refuse must get its own INVALID_ARG error naming the tensor,
while its batch-mates are answered. A request on which a step fails unexpectedly (a bug an
input found) gets its own INTERNAL error, and the traceback goes to the server's log: had the
exception left execute(), Triton would have failed every request of the batch with it.
Refusals are counted on /metrics by reason, failures by exception type.
"""

from __future__ import annotations

import collections
import threading
import traceback
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from maas.metrics import FAILED, REJECTED, Family, Refused


class StepMetrics:
    """One step's metrics (maas.metrics' families) through the Python backend's metrics API,
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


def refusal(pb_utils, error: Exception, metrics: StepMetrics | None = None, tensor: str = ""):
    """The INVALID_ARG response for a refused request (its message prefixed with `tensor`'s
    name, if given), counted on `metrics`."""
    if metrics is not None:
        metrics.refused(error)
    message = f"{tensor}: {error}" if tensor else str(error)
    error = pb_utils.TritonError(message, pb_utils.TritonError.INVALID_ARG)
    return pb_utils.InferenceResponse(error=error)


def failure(pb_utils, error: Exception, metrics: StepMetrics | None = None):
    """The INTERNAL response for a request on which a step failed unexpectedly (called from
    its except clause); the traceback goes to the server's log, the failure is counted on
    `metrics`, whose model names the step."""
    model = metrics.model if metrics is not None else "a Python step"
    if metrics is not None:
        metrics.failed(error)
    pb_utils.Logger.log_error(f"{model}: a request failed:\n{traceback.format_exc()}")
    message = f"{model} failed on this request ({type(error).__name__}: {str(error)[:200]})"
    error = pb_utils.TritonError(message, pb_utils.TritonError.INTERNAL)
    return pb_utils.InferenceResponse(error=error)


def attempt_each(
    pb_utils,
    requests: Sequence,
    work: Callable[[Any], Any],
    refused: type[Exception] = Refused,
    tensor: str = "",
    metrics: StepMetrics | None = None,
) -> tuple[list, dict[int, Any]]:
    """work(request) for each request on its own: (responses, results). `responses` holds an
    error response for each request that work raised on (INVALID_ARG for `refused`, prefixed
    with `tensor`'s name if given; INTERNAL for anything else) and None for the others;
    `results` maps the others' indices to what work returned."""
    responses: list = [None] * len(requests)
    results: dict[int, Any] = {}
    for i, request in enumerate(requests):
        try:
            results[i] = work(request)
        except refused as e:
            responses[i] = refusal(pb_utils, e, metrics, tensor)
        except Exception as e:  # one request's fault, not its batch-mates'
            responses[i] = failure(pb_utils, e, metrics)
    return responses, results


def answer_each(
    pb_utils,
    requests,
    answer: Callable,
    refused: type[Exception] = Refused,
    tensor: str | None = None,
    metrics: StepMetrics | None = None,
):
    """One InferenceResponse per request: answer(request) -> output tensors, or the error
    (prefixed with `tensor`'s name; None: the message names it already)."""
    responses, results = attempt_each(pb_utils, requests, answer, refused, tensor or "", metrics)
    for i, outputs in results.items():
        responses[i] = pb_utils.InferenceResponse(outputs)
    return responses
