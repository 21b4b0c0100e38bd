"""Triton Python-backend model (unbatched): SEED, COUNT (and DIGIT) -> the inputs of a
generator network for COUNT images (maas.generate.generator_inputs): standard-normal rows from
the seed and, for a conditional generator (parameter classes > 0), the digit's one-hot rows.

Used by vae_noise (-> LATENT) and gan_noise (-> NOISE, CONDITION); the output names and the
noise size come from the config. `maas build` copies this file in as version 1's model.py;
here, at the repository's top level, Triton ignores it. A request whose SEED, COUNT or DIGIT
is out of range gets its own INVALID_ARG error naming the tensor.
"""

import json

import triton_python_backend_utils as pb_utils

from maas import contract as C
from maas.adapter import StepMetrics, answer_each
from maas.generate import GenerationError, generator_inputs, one_value


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        self.max_count = int(params["max_count"])
        self.classes = int(params["classes"])
        self.names = [t["name"] for t in config["output"]]
        self.size = int(config["output"][0]["dims"][-1])
        self.metrics = StepMetrics(pb_utils, args["model_name"])

    def _answer(self, request):
        names = (C.SEED, C.COUNT, C.DIGIT) if self.classes else (C.SEED, C.COUNT)
        given = {
            name: one_value(pb_utils.get_input_tensor_by_name(request, name).as_numpy(), name)
            for name in names
        }
        noise, condition = generator_inputs(
            given[C.SEED], given[C.COUNT], self.size, self.max_count,
            given.get(C.DIGIT), self.classes,
        )  # fmt: skip
        arrays = (noise,) if condition is None else (noise, condition)
        return [pb_utils.Tensor(n, a) for n, a in zip(self.names, arrays, strict=True)]

    def execute(self, requests):
        return answer_each(pb_utils, requests, self._answer, GenerationError, metrics=self.metrics)
