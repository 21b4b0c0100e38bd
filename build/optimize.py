"""The `onnx` variant: ONNX Runtime's graph optimisations (level ALL) applied once, at build
time, and the optimised graph saved, so servers load it with optimisation off.

Level ALL may use layout-specific kernels (NCHWc): the saved graph is for ONNX Runtime on this
CPU architecture and ORT version, both recorded in the manifest."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort


def optimize(source: Path, out: Path) -> Path:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(out)
    options.log_severity_level = 3  # its "hardware specific" warning is the note above
    ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
    return out
