"""A request on which a Python step fails unexpectedly (a bug an input found) gets its own
INTERNAL error naming the step and the exception, the traceback goes to the server's log and
the failure to /metrics; its batch-mates are answered and the server keeps serving. Shown on
a small step (tests/e2e/fragile) on the shipped steps' base (maas.runtime.step.StepModel)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

from maas import prometheus
from maas.build import shipped
from maas.build.configs import ServingOptions, core_python_config, python_config, write_config
from maas.runtime import metrics as M
from maas.spec import Step, Tensor

FRAGILE, LOOKUP = "fragile", "lookup"
# sent at once; a 200 ms queue delay lets them share batches
XS = [1.0, -1.0, 2.0, 5000.0, 3.0, -2.0, 4.0, 5.0]


def lookup_onnx(path: Path) -> None:
    """IDS (INT64) -> Y = TABLE[IDS]: ONNX Runtime fails the whole run on an ID out of range."""
    table = onnx.numpy_helper.from_array(np.arange(10, dtype=np.float32) / 10, "TABLE")
    graph = onnx.helper.make_graph(
        [onnx.helper.make_node("Gather", ["TABLE", "IDS"], ["Y"])],
        LOOKUP,
        [onnx.helper.make_tensor_value_info("IDS", onnx.TensorProto.INT64, ["N", 1])],
        [onnx.helper.make_tensor_value_info("Y", onnx.TensorProto.FLOAT, ["N", 1])],
        [table],
    )
    onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), path)


@pytest.fixture(scope="module")
def fragile_server(tmp_path_factory, triton):
    """`fragile` (a Python step on the shipped StepModel) and `lookup` (a core model on the
    shipped Python-backend core, maas.runtime.onnx_core), each with a 200 ms queue delay so
    that requests sent at once share batches."""
    root = tmp_path_factory.mktemp("fragile") / "repo"
    opts = ServingOptions(queue_delay_us=200_000)
    adapter = Path(__file__).with_name(FRAGILE) / "model.py"
    x, y = Tensor("X", "FP32", (1,)), Tensor("Y", "FP32", (1,))
    step = Step(FRAGILE, "python", (x,), (y,), adapter=str(adapter))
    shipped.write_version(root / FRAGILE / "1", step.adapter)
    write_config(root / FRAGILE / "config.pbtxt", python_config(step, opts))

    version = root / LOOKUP / "1"
    shipped.write_version(version, "onnx_core.OnnxCore")
    lookup_onnx(version / "model.onnx")
    (version / "manifest.json").write_text(json.dumps({"model_file": "model.onnx"}))
    core = Step(LOOKUP, "core", (Tensor("IDS", "INT64", (1,)),), (y,))
    write_config(root / LOOKUP / "config.pbtxt", core_python_config(core, opts, [1]))
    with triton(root) as server:
        yield server


def infer_all(url: str, xs: list, model: str = FRAGILE, name: str = "X", dtype=np.float32):
    """One request per value of `xs`, all sent at once: each one's result or exception."""

    async def run():
        client = grpc_aio.InferenceServerClient(url)
        try:

            async def one(x):
                array = np.array([[x]], dtype)
                tensor = grpc_aio.InferInput(name, list(array.shape), np_to_triton_dtype(dtype))
                tensor.set_data_from_numpy(array)
                return await client.infer(model, [tensor])

            return await asyncio.gather(*(one(x) for x in xs), return_exceptions=True)
        finally:
            await client.close()

    return asyncio.run(run())


def statistics(server, model: str) -> dict:
    with grpcclient.InferenceServerClient(server.grpc_url) as client:
        return client.get_inference_statistics(model, as_json=True)["model_stats"][0]


def failures(server, model: str, count: int) -> float:
    """maas_failed_requests_total of `model` (all errors), once it reaches `count` or after
    10 s (the step hands its counts over every StepMetrics.FLUSH_S)."""

    def total(scrape: dict) -> float:
        return sum(
            v for (name, labels), v in scrape.items()
            if name == M.FAILED.name and ("model", model) in labels
        )  # fmt: skip

    target = f"127.0.0.1:{server.ports.metrics}"
    return total(prometheus.scrape_until(target, lambda now: total(now) >= count))


def test_a_failing_request_fails_alone(fragile_server):
    results = infer_all(fragile_server.grpc_url, XS)
    for x, r in zip(XS, results, strict=True):
        if x < 0:
            assert isinstance(r, InferenceServerException) and r.status() == "StatusCode.INTERNAL"
            assert "fragile failed on this request (RuntimeError: a bug met a negative X)" in str(r)
        elif x > 1000:
            assert isinstance(r, InferenceServerException), r
            assert r.status() == "StatusCode.INVALID_ARGUMENT" and "X over 1000" in str(r)
        else:
            assert not isinstance(r, Exception), r
            assert r.as_numpy("Y")[0, 0] == 2 * x
    # They shared batches: a bug's exception left in execute() would have failed its batch-mates.
    stats = statistics(fragile_server, FRAGILE)
    assert int(stats["inference_count"]) == len(XS) > int(stats["execution_count"])
    assert any("RuntimeError: a bug met a negative X" in line for line in fragile_server.log)
    assert failures(fragile_server, FRAGILE, 2) == sum(x < 0 for x in XS)
    assert infer_all(fragile_server.grpc_url, [7.0])[0].as_numpy("Y")[0, 0] == 14.0


def test_a_core_model_run_that_fails_is_retried_request_by_request(fragile_server):
    """ONNX Runtime fails a whole batch's run on one ID out of the table's range: the others
    of that batch are answered from runs of their own, the bad ones get ONNX Runtime's error."""
    ids = [1, 50, 3, 4, 12, 7, 0, 9]
    results = infer_all(fragile_server.grpc_url, ids, LOOKUP, "IDS", np.int64)
    for i, r in zip(ids, results, strict=True):
        if i >= 10:
            assert isinstance(r, InferenceServerException) and r.status() == "StatusCode.INTERNAL"
            assert "lookup failed on this request" in str(r) and "out of" in str(r), r
        else:
            assert not isinstance(r, Exception), r
            assert r.as_numpy("Y")[0, 0] == pytest.approx(i / 10)
    stats = statistics(fragile_server, LOOKUP)
    assert int(stats["inference_count"]) == len(ids) > int(stats["execution_count"])
    assert failures(fragile_server, LOOKUP, 2) == 2
