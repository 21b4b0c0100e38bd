"""Triton Python-backend model: a raw history (HISTORY) -> the network's scaled window (WINDOW)
and the two numbers that undo the scaling (LOC, SCALE).

A thin adapter over maas.series. Each row of a request is one series; a request whose history
is empty, too short, or holds NaN/inf gets its own INVALID_ARG error naming the problem, and
its batch-mates are answered.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from maas import contract as C
from maas.adapter import StepMetrics, answer_each
from maas.series import SeriesError, scale_window


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.length = int(config["parameters"]["length"]["string_value"])
        self.metrics = StepMetrics(pb_utils, args["model_name"])

    def _scale(self, request):
        rows = pb_utils.get_input_tensor_by_name(request, C.HISTORY).as_numpy()
        scaled = [scale_window(row, self.length) for row in rows]
        return [
            pb_utils.Tensor(C.WINDOW, np.stack([w for w, _, _ in scaled])[..., None]),
            pb_utils.Tensor(C.LOC, np.array([[loc] for _, loc, _ in scaled], np.float32)),
            pb_utils.Tensor(C.SCALE, np.array([[s] for _, _, s in scaled], np.float32)),
        ]

    def execute(self, requests):
        return answer_each(pb_utils, requests, self._scale, SeriesError, C.HISTORY, self.metrics)
