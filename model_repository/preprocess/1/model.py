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
from maas.adapter import StepMetrics, refusal
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

    def execute(self, requests):
        responses = [None] * len(requests)
        decoded, counts, ok, sizes = [], [], [], []
        for i, request in enumerate(requests):
            images = pb_utils.get_input_tensor_by_name(request, C.IMAGE).as_numpy().reshape(-1)
            try:
                pixels, sent = decode_images([bytes(b) for b in images], self.spec)
            except ImageError as e:
                responses[i] = refusal(pb_utils, e, self.metrics, C.IMAGE)
                continue
            decoded.append(pixels)
            sizes += sent
            counts.append(len(images))
            ok.append(i)
        if ok:
            batch = normalize(np.concatenate(decoded), self.spec.mean, self.spec.std)
            for i, pixels in zip(ok, split_batch(batch, counts), strict=True):
                responses[i] = pb_utils.InferenceResponse([pb_utils.Tensor(C.PIXELS, pixels)])
        self.metrics.observe(IMAGE_PIXELS, sizes)
        return responses
