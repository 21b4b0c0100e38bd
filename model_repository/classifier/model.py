"""Triton Python-backend model: the classifier on ONNX Runtime (PIXELS -> LOGITS).

Used where Triton has no onnxruntime backend (the CPU tritonserver of the nvidia-pytriton
wheel). `maas build` copies this file into every numbered version folder beside that version's
model file and manifest.json. All requests of a dynamic batch go through one session.run and
are split back.
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from maas import contract as C
from maas.transforms import split_batch


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = {k: v["string_value"] for k, v in config["parameters"].items()}
        version_dir = Path(args["model_repository"]) / args["model_version"]
        manifest = json.loads((version_dir / "manifest.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(params.get("intra_op_threads", "0"))
        options.inter_op_num_threads = int(params.get("inter_op_threads", "1"))
        if params.get("execution_mode") == "parallel":
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        if manifest["onnxruntime"]["graph_optimized"]:
            # The build saved the optimised graph: don't redo the work at every load.
            options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        path = version_dir / manifest["model_file"]
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        arrays = [pb_utils.get_input_tensor_by_name(r, C.PIXELS).as_numpy() for r in requests]
        try:
            logits = self.session.run([C.LOGITS], {C.PIXELS: np.concatenate(arrays)})[0]
        except Exception as e:  # every request gets the error; the model stays up
            error = pb_utils.TritonError(f"onnxruntime: {e}")
            return [pb_utils.InferenceResponse(error=error) for _ in requests]
        parts = split_batch(logits, [len(a) for a in arrays])
        return [pb_utils.InferenceResponse([pb_utils.Tensor(C.LOGITS, p)]) for p in parts]
