"""The Python steps' own metrics, served on Triton's /metrics beside Triton's (the Python
backend's metrics API), declared here once: the steps record them (maas.adapter.StepMetrics),
and the tests, the fleet's Prometheus and `make soak` read them by these names.

Every metric carries the `model` label (the step that recorded it). A refused input counts
under its reason, a short fixed word from the exception (Refused.reason), never its message:
messages hold request data and would give Prometheus a new series for each request.
"""

from __future__ import annotations

from dataclasses import dataclass


class Refused(ValueError):
    """An input a Python step refuses with INVALID_ARG; the message says why, in words for the
    caller, and `reason` says it in one word for the metrics."""

    def __init__(self, message: str, reason: str = "invalid"):
        super().__init__(message)
        self.reason = reason


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
