"""Triton Python-backend model: DECODED images (0..1) -> PNG files (maas.generate.to_png).

Batched (vae_png: one PNG per batch row) or unbatched (vae_sample_png, gan_png: the COUNT
images of one request), as its config says. `maas build` copies this file in as version 1's
model.py; here, at the repository's top level, Triton ignores it. A request whose images are
not finite (a LATENT with NaN in it) gets its own INVALID_ARG error; its batch-mates are
answered.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from maas import contract as C
from maas.adapter import StepMetrics, answer_each
from maas.generate import GenerationError, to_png
from maas.metrics import GENERATED


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.row = (-1, 1) if config["max_batch_size"] > 0 else (-1,)
        self.metrics = StepMetrics(pb_utils, args["model_name"])

    def _answer(self, request):
        images = pb_utils.get_input_tensor_by_name(request, C.DECODED).as_numpy()
        files = np.array(to_png(images), dtype=object).reshape(self.row)
        self.metrics.count(GENERATED, files.size)
        return [pb_utils.Tensor(C.PNG, files)]

    def execute(self, requests):
        return answer_each(
            pb_utils, requests, self._answer, GenerationError, C.DECODED, self.metrics
        )
