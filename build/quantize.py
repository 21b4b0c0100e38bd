"""Static INT8 quantisation with onnxruntime.quantization, for `ort-int8` and `trt-int8`.

Both are QDQ graphs with per-channel INT8 weights and activations calibrated (min/max) on real
model inputs (training data through the preprocessing the server applies), so the calibration
of either runs, and is tested, on the CPU. They differ in the activations:

- `ort-int8` serves the graph in ONNX Runtime: UINT8 activations (its fast path on x86).
- `trt-int8` hands the graph to TensorRT (explicit quantisation, build/tensorrt.py), whose
  ONNX parser takes symmetric INT8 only (zero points 0) and no INT32 bias DequantizeLinear
  ("only activation types allowed"): biases stay float, and only the inputs of weighted
  operators are quantised, as TensorRT's Q/DQ placement guide says; it fuses the rest.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterable
from pathlib import Path

from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from maas.build.gate import Batch
from maas.build.portable import portable

TENSORRT_QUANTISED = ["Conv", "ConvTranspose", "Gemm", "MatMul"]  # TensorRT's weighted ops


class _Batches(CalibrationDataReader):
    def __init__(self, batches: Iterable[Batch]):
        self._batches = iter(batches)

    def get_next(self) -> Batch | None:
        return next(self._batches, None)


def quantize_int8(
    source: Path, out: Path, batches: Iterable[Batch], *, for_tensorrt: bool = False
) -> Path:
    """`source` quantised to a QDQ graph at `out`, calibrated on `batches`; symmetric INT8
    throughout when `for_tensorrt`."""
    batches = list(batches)
    if not batches:  # else onnxruntime's "No data is collected."
        raise ValueError("INT8 calibration needs real model inputs; none given")
    logging.getLogger("root").setLevel(logging.WARNING)  # quant_pre_process logs at INFO
    with tempfile.TemporaryDirectory() as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        qdq = Path(tmp) / "qdq.onnx"
        quantize_static(
            str(prepared),
            str(qdq),
            _Batches(batches),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            # U8 activations x S8 weights: ONNX Runtime's fast path on x86 (AVX2/VNNI); measured
            # faster here at batch 1 than S8S8, and equal at batch 64. TensorRT: S8S8 only.
            activation_type=QuantType.QInt8 if for_tensorrt else QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            op_types_to_quantize=TENSORRT_QUANTISED if for_tensorrt else None,
            extra_options={
                "ActivationSymmetric": for_tensorrt,
                "WeightSymmetric": True,
                "QuantizeBias": not for_tensorrt,
                "OpTypesToExcludeOutputQuantization": TENSORRT_QUANTISED if for_tensorrt else [],
            },
        )
        return portable(qdq, out)
