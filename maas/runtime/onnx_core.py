"""OnnxCore: any core network (the classifier, the forecaster's RNN, ...) on ONNX Runtime in
the Python backend, its inputs and outputs as its config names them.

The alternate of a core model's config.pbtxt (Triton's own onnxruntime backend, which every
Triton container has): `configs/python.pbtxt`, which `maas serve` selects on a tritonserver
without that backend (the CPU build in the nvidia-pytriton wheel), where the environment it
runs in has ONNX Runtime. Each version folder holds the version's model file, manifest.json
and this step. All requests of a dynamic batch go through one session.run and are split back;
a run that fails is retried request by request, so that only a request that fails on its own
gets the error (INTERNAL, counted in maas_failed_requests_total).
"""

from __future__ import annotations

import json

import numpy as np

from .step import StepModel, failure, split_batch


class OnnxCore(StepModel):
    PARAMETERS = ("intra_op_threads", "inter_op_threads", "execution_mode")
    NEEDS = ("onnxruntime",)

    def setup(self) -> None:
        import onnxruntime as ort

        manifest = json.loads((self.version_folder / "manifest.json").read_text())
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(self.params["intra_op_threads"])
        options.inter_op_num_threads = int(self.params["inter_op_threads"])
        if self.params["execution_mode"] == "parallel":
            options.execution_mode = ort.ExecutionMode.ORT_PARALLEL
        path = self.version_folder / manifest["model_file"]
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [t["name"] for t in self.config["input"]]
        self.outputs = [t["name"] for t in self.config["output"]]
        self._warm()

    def _warm(self) -> None:
        """One run at the largest batch this config allows (ONNX Runtime allocates per shape
        on first use): here rather than as a config warm-up, so that a tool that changes
        max_batch_size (Model Analyzer) cannot leave a warm-up the config no longer allows."""
        batch = max(1, self.config.get("max_batch_size", 0))
        feeds = {
            t["name"]: np.zeros(
                [batch, *(max(int(d), 1) for d in t["dims"])],
                self.pb.triton_string_to_numpy(t["data_type"]),
            )
            for t in self.config["input"]
        }
        self.session.run(self.outputs, feeds)

    def execute(self, requests):
        feeds = {name: [self.input(r, name) for r in requests] for name in self.inputs}
        try:
            results = self.session.run(
                self.outputs, {name: np.concatenate(arrays) for name, arrays in feeds.items()}
            )
        except Exception as e:
            if len(requests) == 1:
                return [failure(self.pb, e, self.metrics)]
            # One request's values can fail the whole run (an index out of a table's range):
            # each runs alone then, and only those that fail alone get the error.
            return [self.execute([r])[0] for r in requests]
        counts = [len(a) for a in feeds[self.inputs[0]]]
        parts = [split_batch(r, counts) for r in results]
        return [
            self.respond(**{name: part[i] for name, part in zip(self.outputs, parts, strict=True)})
            for i in range(len(requests))
        ]
