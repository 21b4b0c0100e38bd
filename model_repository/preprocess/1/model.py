"""Triton Python-backend model: encoded image bytes (IMAGE) -> normalised pixels (PIXELS).

A thin adapter over maas.transforms. Requests that Triton batches together are decoded one
image at a time (decoding is per image anyway), then normalised in one array operation and
split back. A request with a bad image gets its own INVALID_ARG error; its batch-mates succeed.
On /metrics: each image's size as sent, and refusals by reason.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from maas import contract as C
from maas.adapter import StepMetrics, attempt_each
from maas.metrics import IMAGE_PIXELS
from maas.spec import floats
from maas.transforms import ImageError, Preprocessing, decode_images, normalize, split_batch


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        _, height, width = pb_utils.get_output_config_by_name(config, C.PIXELS)["dims"]
        self.spec = Preprocessing(
            height=int(height),
            width=int(width),
            mean=floats(params["mean"]),
            std=floats(params["std"]),
            max_pixels=int(params["max_pixels"]),
        )
        self.metrics = StepMetrics(pb_utils, args["model_name"])

    def _decode(self, request) -> tuple[np.ndarray, list[int]]:
        images = pb_utils.get_input_tensor_by_name(request, C.IMAGE).as_numpy().reshape(-1)
        return decode_images([bytes(b) for b in images], self.spec)

    def execute(self, requests):
        responses, decoded = attempt_each(
            pb_utils, requests, self._decode, ImageError, C.IMAGE, self.metrics
        )
        if decoded:
            arrays = [pixels for pixels, _ in decoded.values()]
            batch = normalize(np.concatenate(arrays), self.spec.mean, self.spec.std)
            parts = split_batch(batch, [len(a) for a in arrays])
            for i, part in zip(decoded, parts, strict=True):
                responses[i] = pb_utils.InferenceResponse([pb_utils.Tensor(C.PIXELS, part)])
        self.metrics.observe(IMAGE_PIXELS, [n for _, sent in decoded.values() for n in sent])
        return responses
