"""The Triton release maas builds for, and what its container gives a repository: one place,
so that the TensorRT pin, the ONNX a native backend can load, the Python the stubs run and the
image the manifests name move together (change them together, with pyproject's tensorrt pin).

Read from the r24.10 release of NVIDIA's Triton (docs/deploy.md says where).
"""

from __future__ import annotations

TRITON_RELEASE = "24.10"  # nvcr.io/nvidia/tritonserver:24.10-py3, Triton 2.51
TRITON_IMAGE = f"nvcr.io/nvidia/tritonserver:{TRITON_RELEASE}-py3"
TRITON_TENSORRT = "10.5"  # the TensorRT its tensorrt backend loads: plans must match
TRITON_ONNXRUNTIME = "1.19.2"  # the ONNX Runtime its onnxruntime backend loads
# What ONNX Runtime 1.19 loads: IR version 10 at most, the default domain's opset 21 at most.
MAX_IR_VERSION = 10
MAX_OPSET = 21
CONTAINER_PYTHON = "3.10"  # the Python its Python backend's stub runs (numpy<2, nothing else)
