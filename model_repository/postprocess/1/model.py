"""Triton Python-backend model: LOGITS (+ optional TOP_K) -> LABELS, SCORES, CLASS_IDS.

Softmax (unless the network gives probabilities: parameter `outputs`) and top-k run once over
all requests of a dynamic batch (at the largest k asked for); each request then takes its own
k columns. Labels come from labels.txt beside this config.
On /metrics: images classified by top-1 label, and refusals.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from maas import contract as C
from maas.adapter import StepMetrics, attempt_each
from maas.metrics import PREDICTED, Refused
from maas.transforms import postprocess, split_batch


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        labels_file = Path(args["model_repository"]) / params["labels_file"]
        self.labels = labels_file.read_text().splitlines()
        self.default_k = int(params["default_top_k"])
        self.probabilities = params["outputs"] == "probabilities"
        self.metrics = StepMetrics(pb_utils, args["model_name"])

    def _top_k(self, request) -> int:
        tensor = pb_utils.get_input_tensor_by_name(request, C.TOP_K)
        if tensor is None:
            return self.default_k
        values = np.unique(tensor.as_numpy())
        if len(values) != 1:
            raise Refused(f"{C.TOP_K} must be the same for every image of a request", "bad_top_k")
        if values[0] < 1:
            raise Refused(f"{C.TOP_K} must be at least 1, got {values[0]}", "bad_top_k")
        return int(values[0])

    def _read(self, request) -> tuple[int, np.ndarray]:
        return self._top_k(request), pb_utils.get_input_tensor_by_name(request, C.LOGITS).as_numpy()

    def execute(self, requests):
        responses, read = attempt_each(pb_utils, requests, self._read, metrics=self.metrics)
        if read:
            ks, logits = zip(*read.values(), strict=True)
            labels, scores, ids = postprocess(
                np.concatenate(logits), max(ks), self.labels, self.probabilities
            )
            for i, n in zip(*np.unique(ids[:, 0], return_counts=True), strict=True):
                self.metrics.count(PREDICTED, int(n), label=self.labels[i])
            counts = [len(x) for x in logits]
            parts = zip(*(split_batch(a, counts) for a in (labels, scores, ids)), strict=True)
            for i, k, (lab, sc, cid) in zip(read, ks, parts, strict=True):
                responses[i] = pb_utils.InferenceResponse(
                    [
                        pb_utils.Tensor(C.LABELS, lab[:, :k]),
                        pb_utils.Tensor(C.SCORES, sc[:, :k]),
                        pb_utils.Tensor(C.CLASS_IDS, cid[:, :k]),
                    ]
                )
        return responses
