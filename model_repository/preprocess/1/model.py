"""Triton Python-backend model: encoded image bytes (IMAGE) -> pixel values (PIXELS, RGB
0..255, NCHW at the network's size; the network normalises them itself).

A thin adapter over maas.transforms. Requests that Triton batches together are decoded one
image at a time (decoding is per image anyway), then laid out in one array operation and
split back. A request with a bad image gets its own INVALID_ARG error; its batch-mates succeed.
On /metrics: each image's size as sent, and refusals by reason.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

from maas import contract as C
from maas.adapter import StepMetrics, attempt_each
from maas.metrics import IMAGE_PIXELS
from maas.transforms import ImageError, Preprocessing, decode_images, layout, split_batch


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        _, height, width = pb_utils.get_output_config_by_name(config, C.PIXELS)["dims"]
        self.spec = Preprocessing(int(height), int(width), int(params["max_pixels"]))
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
            batch = layout(np.concatenate(arrays))
            parts = split_batch(batch, [len(a) for a in arrays])
            for i, part in zip(decoded, parts, strict=True):
                responses[i] = pb_utils.InferenceResponse([pb_utils.Tensor(C.PIXELS, part)])
        self.metrics.observe(IMAGE_PIXELS, [n for _, sent in decoded.values() for n in sent])
        return responses
