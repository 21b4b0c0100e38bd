"""Triton Python-backend model that does nothing: its one input back as its one output.

The steps of benchmarks/floor.py's empty ensemble: what Triton, the Python backend and the
ensemble cost a request when the steps themselves cost nothing.
"""

import json

import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.input = config["input"][0]["name"]
        self.output = config["output"][0]["name"]

    def execute(self, requests):
        return [
            pb_utils.InferenceResponse(
                [
                    pb_utils.Tensor(
                        self.output, pb_utils.get_input_tensor_by_name(r, self.input).as_numpy()
                    )
                ]
            )
            for r in requests
        ]
