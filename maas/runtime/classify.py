"""Classification: a network's outputs -> the top-k labels and scores, and Postprocess, the
Python step that does it in Triton."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .errors import Refused
from .metrics import PREDICTED
from .names import CLASS_IDS, LABELS, LOGITS, SCORES, TOP_K
from .step import StepModel, split_batch


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax, stable for large logits."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def top_k(probs: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The k best (class ids int64, scores) per row, best first; ties keep the lower id first."""
    if k < 1:
        raise ValueError(f"top_k must be at least 1, got {k}")
    k = min(k, probs.shape[-1])
    ids = np.argsort(-probs, axis=-1, kind="stable")[..., :k]
    return ids.astype(np.int64), np.take_along_axis(probs, ids, axis=-1)


def scores(outputs: np.ndarray, probabilities: bool = False) -> np.ndarray:
    """A classifier's outputs (N, C) -> scores per class, float32: the softmax of logits, or
    probabilities as they are (a network whose last layer is a softmax: a second softmax
    would flatten them)."""
    outputs = outputs.astype(np.float32)
    return outputs if probabilities else softmax(outputs)


def postprocess(
    logits: np.ndarray, k: int, labels: Sequence[str], probabilities: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Outputs (N, C) -> (labels as bytes objects, scores float32, class ids int64), each
    (N, k); `probabilities`: the outputs are scores already (see `scores`)."""
    if logits.ndim != 2 or logits.shape[1] != len(labels):
        raise ValueError(f"expected logits of shape (N, {len(labels)}), got {logits.shape}")
    ids, best = top_k(scores(logits, probabilities), k)
    names = np.asarray([label.encode() for label in labels], dtype=object)[ids]
    return names, best.astype(np.float32), ids


class Postprocess(StepModel):
    """LOGITS (+ optional TOP_K) -> LABELS, SCORES, CLASS_IDS. Softmax (unless the network
    gives probabilities: parameter `outputs`) and top-k run once over all requests of a
    dynamic batch (at the largest k asked for); each request then takes its own k columns.
    Labels come from the file beside its config. On /metrics: images classified by top-1
    label, and refusals."""

    PARAMETERS = ("labels_file", "default_top_k", "outputs")

    def setup(self) -> None:
        self.labels = (self.folder / self.params["labels_file"]).read_text().splitlines()
        self.default_k = int(self.params["default_top_k"])
        self.probabilities = self.params["outputs"] == "probabilities"

    def _top_k(self, request) -> int:
        given = self.input(request, TOP_K)
        if given is None:
            return self.default_k
        values = np.unique(given)
        if len(values) != 1:
            raise Refused(f"{TOP_K} must be the same for every image of a request", "bad_top_k")
        if values[0] < 1:
            raise Refused(f"{TOP_K} must be at least 1, got {values[0]}", "bad_top_k")
        return int(values[0])

    def _read(self, request) -> tuple[int, np.ndarray]:
        return self._top_k(request), self.input(request, LOGITS)

    def execute(self, requests):
        responses, read = self.attempt_each(requests, self._read)
        if read:
            ks, logits = zip(*read.values(), strict=True)
            labels, scores_, ids = postprocess(
                np.concatenate(logits), max(ks), self.labels, self.probabilities
            )
            for i, n in zip(*np.unique(ids[:, 0], return_counts=True), strict=True):
                self.metrics.count(PREDICTED, int(n), label=self.labels[i])
            counts = [len(x) for x in logits]
            parts = zip(*(split_batch(a, counts) for a in (labels, scores_, ids)), strict=True)
            for i, k, (lab, sc, cid) in zip(read, ks, parts, strict=True):
                responses[i] = self.respond(
                    **{LABELS: lab[:, :k], SCORES: sc[:, :k], CLASS_IDS: cid[:, :k]}
                )
        return responses
