"""A request on which a Python step fails unexpectedly (a bug an input found) gets its own
INTERNAL error naming the step and the exception, the traceback goes to the server's log and
the failure to /metrics; its batch-mates are answered and the server keeps serving. Shown on
a small step (tests/e2e/fragile) that uses maas.adapter as the shipped steps do."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.aio as grpc_aio
from tritonclient.utils import InferenceServerException

from maas import metrics as M
from maas import prometheus
from maas.build.configs import ServingOptions, python_config, write_config
from maas.serve import Ports, TritonServer
from maas.spec import Step, Tensor

FRAGILE = "fragile"
# sent at once; a 200 ms queue delay lets them share batches
XS = [1.0, -1.0, 2.0, 5000.0, 3.0, -2.0, 4.0, 5.0]


@pytest.fixture(scope="module")
def fragile_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("fragile") / "repo"
    adapter = Path(__file__).with_name(FRAGILE) / "model.py"
    x, y = Tensor("X", "FP32", (1,)), Tensor("Y", "FP32", (1,))
    step = Step(FRAGILE, "python", (x,), (y,), adapter=str(adapter))
    (root / FRAGILE / "1").mkdir(parents=True)
    shutil.copy2(adapter, root / FRAGILE / "1")
    config = python_config(step, ServingOptions(queue_delay_us=200_000))
    write_config(root / FRAGILE / "config.pbtxt", config)
    with TritonServer(root, Ports.free()) as server:
        yield server


def infer_all(url: str, xs: list[float]) -> list:
    async def run():
        client = grpc_aio.InferenceServerClient(url)
        try:

            async def one(x):
                tensor = grpc_aio.InferInput("X", [1, 1], "FP32")
                tensor.set_data_from_numpy(np.array([[x]], np.float32))
                return await client.infer(FRAGILE, [tensor])

            return await asyncio.gather(*(one(x) for x in xs), return_exceptions=True)
        finally:
            await client.close()

    return asyncio.run(run())


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
    with grpcclient.InferenceServerClient(fragile_server.grpc_url) as client:
        stats = client.get_inference_statistics(FRAGILE, as_json=True)["model_stats"][0]
    assert int(stats["inference_count"]) == len(XS) > int(stats["execution_count"])

    assert any("RuntimeError: a bug met a negative X" in line for line in fragile_server.log)
    failed = (M.FAILED.name, (("error", "RuntimeError"), ("model", FRAGILE)))
    scrape = {}
    for _ in range(50):  # the step hands its counts over every StepMetrics.FLUSH_S
        scrape = prometheus.scrape(f"127.0.0.1:{fragile_server.ports.metrics}")
        if scrape.get(failed):
            break
        time.sleep(0.2)
    assert scrape.get(failed) == sum(x < 0 for x in XS)
    assert infer_all(fragile_server.grpc_url, [7.0])[0].as_numpy("Y")[0, 0] == 14.0
