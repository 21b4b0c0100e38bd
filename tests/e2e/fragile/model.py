"""Triton Python-backend model for tests/e2e/test_step_failures.py: X -> Y = 2X on the shipped
step base (maas_runtime.step.StepModel, shipped beside this file as every step's is). X < 0
stands for an input that hits a bug (RuntimeError); X > 1000 for one the step refuses."""

from maas_runtime.errors import Refused
from maas_runtime.step import StepModel


class TritonPythonModel(StepModel):
    def answer(self, request):
        x = self.input(request, "X")
        if (x < 0).any():
            raise RuntimeError("a bug met a negative X")
        if (x > 1000).any():
            raise Refused("X over 1000", "too_big")
        return [self.pb.Tensor("Y", 2 * x)]
