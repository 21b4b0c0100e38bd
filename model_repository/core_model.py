"""Triton Python-backend model: any core model (the classifier, the forecaster's RNN, ...) on
ONNX Runtime, its inputs and outputs as its config names them.

Used where Triton has no onnxruntime backend (the CPU tritonserver of the nvidia-pytriton
wheel). `maas build` copies this file into every numbered version folder of every core model,
beside that version's model file and manifest.json; here, at the repository's top level,
Triton ignores it. All requests of a dynamic batch go through one session.run and are split
back; a run that fails is retried request by request, so that only a request that fails on its
own gets the error (INTERNAL, counted in maas_failed_requests_total).
"""

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils

from maas.adapter import StepMetrics, failure
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
        self.inputs = [t["name"] for t in config["input"]]
        self.outputs = [t["name"] for t in config["output"]]
        self._warm(config)
        self.metrics = StepMetrics(pb_utils, args["model_name"])

    def _warm(self, config) -> None:
        """One run at the largest batch this config allows (ONNX Runtime allocates per shape
        on first use): here rather than as a config warm-up, so that a tool that changes
        max_batch_size (Model Analyzer) cannot leave a warm-up the config no longer allows."""
        batch = max(1, config.get("max_batch_size", 0))
        feeds = {
            t["name"]: np.zeros(
                [batch, *(max(int(d), 1) for d in t["dims"])],
                pb_utils.triton_string_to_numpy(t["data_type"]),
            )
            for t in config["input"]
        }
        self.session.run(self.outputs, feeds)

    def execute(self, requests):
        feeds = {
            name: [pb_utils.get_input_tensor_by_name(r, name).as_numpy() for r in requests]
            for name in self.inputs
        }
        try:
            results = self.session.run(
                self.outputs, {name: np.concatenate(arrays) for name, arrays in feeds.items()}
            )
        except Exception as e:
            if len(requests) == 1:
                return [failure(pb_utils, e, self.metrics)]
            # One request's values can fail the whole run (an index out of a table's range):
            # each runs alone then, and only those that fail alone get the error.
            return [self.execute([r])[0] for r in requests]
        counts = [len(a) for a in feeds[self.inputs[0]]]
        parts = [split_batch(r, counts) for r in results]
        return [
            pb_utils.InferenceResponse(
                [
                    pb_utils.Tensor(name, part[i])
                    for name, part in zip(self.outputs, parts, strict=True)
                ]
            )
            for i in range(len(requests))
        ]
