"""The Q/DQ graph that trt-int8 hands to TensorRT (build/quantize.py), checked on the CPU:
symmetric INT8 where TensorRT's ONNX parser takes it, only in front of the weighted operators,
and close to the float model in ONNX Runtime. What maas asks TensorRT itself for is
tests/unit/test_tensorrt_contract.py."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, numpy_helper
from onnx import helper as oh

from maas.build.quantize import TENSORRT_QUANTISED, quantize_int8

WEIGHTED = set(TENSORRT_QUANTISED)
QDQ = {"QuantizeLinear", "DequantizeLinear"}


def tiny_model(path: Path) -> Path:
    """Conv -> Relu -> (r + sigmoid(r)) -> MaxPool -> Flatten -> Gemm -> Relu -> MatMul: the
    weighted operators TensorRT runs in INT8, and between them operators it should not see
    quantised (an Add of two activations among them)."""
    rng = np.random.default_rng(0)

    def weight(name, *shape, scale):
        return numpy_helper.from_array(
            (rng.standard_normal(shape) * scale).astype(np.float32), name
        )

    nodes = [
        oh.make_node("Conv", ["X", "cw", "cb"], ["c"], pads=[1, 1, 1, 1]),
        oh.make_node("Relu", ["c"], ["r"]),
        oh.make_node("Sigmoid", ["r"], ["s"]),
        oh.make_node("Add", ["r", "s"], ["a"]),
        oh.make_node("MaxPool", ["a"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        oh.make_node("Flatten", ["p"], ["f"]),
        oh.make_node("Gemm", ["f", "gw", "gb"], ["g"], transB=1),
        oh.make_node("Relu", ["g"], ["h"]),
        oh.make_node("MatMul", ["h", "mw"], ["Y"]),
    ]
    weights = [
        weight("cw", 8, 3, 3, 3, scale=0.3), weight("cb", 8, scale=0.1),
        weight("gw", 16, 8 * 4 * 4, scale=0.1), weight("gb", 16, scale=0.1),
        weight("mw", 16, 5, scale=0.3),
    ]  # fmt: skip
    graph = oh.make_graph(
        nodes,
        "tiny",
        [oh.make_tensor_value_info("X", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [oh.make_tensor_value_info("Y", TensorProto.FLOAT, ["N", 5])],
        weights,
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return path


@pytest.fixture(scope="module")
def graphs(tmp_path_factory):
    """The float model, its trt-int8 and ort-int8 Q/DQ graphs (calibrated on 64 rows), and
    96 held-out rows from the same distribution."""
    folder = tmp_path_factory.mktemp("qdq")
    source = tiny_model(folder / "float.onnx")
    rows = np.random.default_rng(1).standard_normal((160, 3, 8, 8)).astype(np.float32)
    batches = [{"X": rows[i : i + 32]} for i in range(0, 64, 32)]
    trt = quantize_int8(source, folder / "trt.onnx", batches, for_tensorrt=True)
    ort_int8 = quantize_int8(source, folder / "ort.onnx", batches)
    return source, trt, ort_int8, rows[64:]


def qdq_facts(path: Path):
    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    producer = {out: n for n in graph.node for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in graph.node:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    return graph, inits, producer, consumers


def test_the_tensorrt_qdq_graph_is_symmetric_int8_on_weighted_inputs_only(graphs):
    _, trt, _, _ = graphs
    graph, inits, producer, consumers = qdq_facts(trt)
    qdq = [n for n in graph.node if n.op_type in QDQ]
    assert qdq, "nothing was quantised"
    for n in qdq:
        # Symmetric INT8: an explicit zero point (its default would be UINT8), INT8 and 0.
        assert len(n.input) == 3, f"{n.name}: no zero point"
        zero = inits[n.input[2]]
        assert zero.data_type == TensorProto.INT8, f"{n.name}: zero point not INT8"
        assert not numpy_helper.to_array(zero).any(), f"{n.name}: zero point not 0"
        assert (numpy_helper.to_array(inits[n.input[1]]) > 0).all()
        if n.op_type == "DequantizeLinear":
            source = inits.get(n.input[0])  # a quantised weight, or a QuantizeLinear's output
            if source is not None:  # no INT32 bias DequantizeLinear: TensorRT refuses it
                assert source.data_type == TensorProto.INT8, f"{n.name}: {source.data_type}"
            else:
                assert producer[n.input[0]].op_type == "QuantizeLinear"
            # Only in front of Conv/Gemm/MatMul/ConvTranspose.
            assert {c.op_type for c in consumers[n.output[0]]} <= WEIGHTED, n.name
        else:
            assert {c.op_type for c in consumers[n.output[0]]} == {"DequantizeLinear"}
    # Every weighted operator takes its data and its weight through Q/DQ; biases stay float.
    weighted = [n for n in graph.node if n.op_type in WEIGHTED]
    assert sorted(n.op_type for n in weighted) == ["Conv", "Gemm", "MatMul"]
    for n in weighted:
        assert [producer[i].op_type for i in n.input[:2]] == ["DequantizeLinear"] * 2, n.name
        if len(n.input) > 2:
            assert inits[n.input[2]].data_type == TensorProto.FLOAT, n.name
    # Nothing else is quantised, the Add of two activations included.
    for n in graph.node:
        if n.op_type not in WEIGHTED | QDQ:
            assert all(producer.get(i) is None or producer[i].op_type not in QDQ
                       for i in n.input), n.name  # fmt: skip


def test_ort_int8_keeps_onnx_runtimes_own_quantisation(graphs):
    """The contrast that makes the test above mean something: without for_tensorrt, the
    activations are UINT8 with zero points, biases INT32, and the Add is quantised."""
    _, _, ort_int8, _ = graphs
    graph, inits, producer, _ = qdq_facts(ort_int8)
    zero_types = {inits[n.input[2]].data_type for n in graph.node if n.op_type in QDQ}
    assert TensorProto.UINT8 in zero_types
    assert any(
        n.op_type == "DequantizeLinear" and inits.get(n.input[0]) is not None
        and inits[n.input[0]].data_type == TensorProto.INT32
        for n in graph.node
    )  # fmt: skip
    [add] = [n for n in graph.node if n.op_type == "Add"]
    assert {producer[i].op_type for i in add.input} == {"DequantizeLinear"}


# Measured on this tiny model and these rows (deterministic): over the 96 held-out rows,
# |int8 - float| is 0.0165 of the float outputs' RMS and at most 0.044 of their largest
# magnitude (0.27 against 6.1). A graph that clips (one activation's or weight's scale
# halved) measured 0.077 to 0.39 RMS and 0.11 to 0.43 at most.
RMS_TOLERANCE = 0.03
MAX_TOLERANCE = 0.08


def test_the_tensorrt_qdq_graph_runs_close_to_the_float_model(graphs):
    """The Q/DQ graph run as written (ONNX Runtime's graph optimisations off: each
    QuantizeLinear/DequantizeLinear computed, no fusion into ONNX Runtime's own int8 kernels),
    which is the arithmetic TensorRT's int8 layers do with int32 sums. Fused, on a CPU with
    AVX2 and no VNNI (an AMD EPYC here, 2026-12), ONNX Runtime's u8s8 kernels saturate their
    16-bit pair sums: 0.108 RMS, 0.31 at most, on this same graph."""
    source, trt, _, held_out = graphs

    def run(path, level=ort.GraphOptimizationLevel.ORT_ENABLE_ALL):
        options = ort.SessionOptions()
        options.graph_optimization_level = level
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        return session.run(["Y"], {"X": held_out})[0]

    reference, quantised = run(source), run(trt, ort.GraphOptimizationLevel.ORT_DISABLE_ALL)
    error = np.abs(quantised - reference)
    rms = np.sqrt((error**2).mean() / (reference**2).mean())
    worst = error.max() / np.abs(reference).max()
    assert 0 < rms <= RMS_TOLERANCE, rms  # 0: the graph was not quantised at all
    assert worst <= MAX_TOLERANCE, worst


def test_int8_calibration_needs_rows(tmp_path):
    source = tiny_model(tmp_path / "float.onnx")
    with pytest.raises(ValueError, match="needs real model inputs; none given"):
        quantize_int8(source, tmp_path / "trt.onnx", [], for_tensorrt=True)
    assert not (tmp_path / "trt.onnx").exists()
