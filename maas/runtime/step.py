"""StepModel: the base of every Python step, so that a step is its transform plus a declaration.

    class Postprocess(StepModel):
        PARAMETERS = ("labels_file", "default_top_k", "outputs")   # what its config must give
        def setup(self): ...                     # self.config, self.params, self.folder are read
        def answer(self, request): ...           # one request -> its output tensors

Triton hands a model every request of a dynamic batch at once; each must get its own response,
and a request the pure functions refuse must get its own INVALID_ARG error naming the tensor,
while its batch-mates are answered. A request on which a step fails unexpectedly (a bug an
input found) gets its own INTERNAL error, and the traceback goes to the server's log: had the
exception left execute(), Triton would have failed every request of the batch with it. Refusals
are counted on /metrics by reason, failures by exception type. A step that works on a batch at
once (decoding is per image, softmax is not) overrides `execute` and uses `attempt_each` for
the per-request part.

triton_python_backend_utils exists only inside Triton's stub: it is imported in `initialize`,
so the transforms and the classes import anywhere (tests, the build's checks).
"""

from __future__ import annotations

import json
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from . import names as C
from .errors import Refused
from .metrics import StepMetrics


class StepModel:
    """Triton's TritonPythonModel for one step, its preamble done once: the config, its
    parameters (every name in PARAMETERS must be there), its metrics, one response per
    request. Subclasses override `setup` and `answer` (or `execute`)."""

    PARAMETERS: tuple[str, ...] = ()  # config parameters the step reads, declared once
    REFUSED: type[Exception] = Refused  # what `answer` raises for a request it turns down
    TENSOR: str = ""  # the input its refusals name (empty: their messages name it)
    NEEDS: tuple[str, ...] = ()  # third-party packages beyond numpy (maas build ships them)

    def initialize(self, args: dict) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.name = args["model_name"]
        self.folder = Path(args["model_repository"])  # the model's folder: its data files
        self.version_folder = self.folder / args["model_version"]
        self.config = json.loads(args["model_config"])
        self.params = {k: v["string_value"] for k, v in self.config.get("parameters", {}).items()}
        missing = [name for name in self.PARAMETERS if name not in self.params]
        if missing:
            raise ValueError(f"{self.name}: its config lacks parameters {', '.join(missing)}")
        self.metrics = StepMetrics(pb_utils, self.name)
        self.setup()

    def setup(self) -> None:
        """Read what the step needs from self.config, self.params and self.folder."""

    def answer(self, request) -> list:
        """One request -> its output tensors (pb_utils.Tensor); raise REFUSED to turn it down."""
        raise NotImplementedError

    def execute(self, requests: Sequence) -> list:
        return answer_each(self.pb, requests, self.answer, self.REFUSED, self.TENSOR, self.metrics)

    def finalize(self) -> None:
        self.metrics.stop()

    # What subclasses use.
    def input(self, request, name: str) -> np.ndarray | None:
        """A request's input as an array, None where it sent none (an optional input)."""
        tensor = self.pb.get_input_tensor_by_name(request, name)
        return None if tensor is None else tensor.as_numpy()

    def tenant(self, request) -> str:
        """Who sent the request, as the front door named it (its maas-tenant header, which
        tritonserver forwards as a parameter); "" where no front door names tenants. Triton
        writes a request's own parameters first and forwarded headers after, and json keeps
        the last of a name given twice: the front door's word wins over a client's (whose
        HTTP body the guard also refuses when it names one)."""
        tenant = json.loads(request.parameters() or "{}").get(C.TENANT, "")
        return tenant if isinstance(tenant, str) else ""

    def dims(self, name: str) -> list[int]:
        """An input's or output's dims (without the batch axis) as the config declares them."""
        for tensor in (*self.config["input"], *self.config["output"]):
            if tensor["name"] == name:
                return [int(d) for d in tensor["dims"]]
        raise KeyError(f"{self.name} has no tensor {name}")

    def respond(self, **outputs: np.ndarray):
        """A response holding the named arrays."""
        return self.pb.InferenceResponse([self.pb.Tensor(n, a) for n, a in outputs.items()])

    def attempt_each(self, requests: Sequence, work: Callable[[Any], Any]):
        """attempt_each with this step's refusal, tensor and metrics."""
        return attempt_each(self.pb, requests, work, self.REFUSED, self.TENSOR, self.metrics)


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
    requests: Sequence,
    answer: Callable,
    refused: type[Exception] = Refused,
    tensor: str = "",
    metrics: StepMetrics | None = None,
) -> list:
    """One InferenceResponse per request: answer(request) -> output tensors, or the error
    (prefixed with `tensor`'s name; empty: the message names it already)."""
    responses, results = attempt_each(pb_utils, requests, answer, refused, tensor, metrics)
    for i, outputs in results.items():
        responses[i] = pb_utils.InferenceResponse(outputs)
    return responses


def split_batch(batch: np.ndarray, counts: Sequence[int]) -> list[np.ndarray]:
    """Undo the stacking of several requests: rows of `batch` back into per-request arrays."""
    ends = np.cumsum(counts).tolist()
    return [batch[end - n : end] for n, end in zip(counts, ends, strict=True)]
