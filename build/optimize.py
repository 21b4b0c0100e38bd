"""The `onnx` variant: ONNX Runtime's graph optimisations (level ALL) applied once, at build
time, and the optimised graph saved, so servers load it with optimisation off.

Level ALL may use layout-specific kernels (NCHWc): the saved graph is for ONNX Runtime on this
CPU architecture and ORT version, both recorded in the manifest."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort

LEVELS = {
    "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    # Constant folding and redundant-node removal only: no layout or provider-specific
    # kernels, so other providers (TensorRT's, CUDA's) can take the graph.
    "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
}


def optimize(source: Path, out: Path, level: str = "all") -> Path:
    options = ort.SessionOptions()
    options.graph_optimization_level = LEVELS[level]
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3  # its "hardware specific" warning is the note above
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return out
