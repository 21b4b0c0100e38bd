"""Triton Python-backend model for tests/e2e/test_step_failures.py: X -> Y = 2X through
maas.adapter.answer_each, as the shipped steps answer. X < 0 stands for an input that hits a
bug (RuntimeError); X > 1000 for one the step refuses (Refused)."""

import triton_python_backend_utils as pb_utils

from maas.adapter import StepMetrics, answer_each
from maas.metrics import Refused


class TritonPythonModel:
    def initialize(self, args):
        self.metrics = StepMetrics(pb_utils, args["model_name"])

    def _answer(self, request):
        x = pb_utils.get_input_tensor_by_name(request, "X").as_numpy()
        if (x < 0).any():
            raise RuntimeError("a bug met a negative X")
        if (x > 1000).any():
            raise Refused("X over 1000", "too_big")
        return [pb_utils.Tensor("Y", 2 * x)]

    def execute(self, requests):
        return answer_each(pb_utils, requests, self._answer, metrics=self.metrics)
