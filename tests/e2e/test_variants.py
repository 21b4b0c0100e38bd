"""Each CPU variant served by the real tritonserver predicts what it predicts offline.

One repository holds version 1 (`onnx`) and version 2 (`ort-int8`), both loaded
(serve_versions=2); the ensemble follows the newest."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as grpcclient

from maas.build import configs, variants
from maas.build.repository import BuildOptions, build_repository
from maas.clients.client import Client
from maas.runtime import names as C
from maas.runtime.classify import postprocess
from maas.runtime.images import preprocess


@pytest.fixture(scope="module")
def two_variant_server(tmp_path_factory, checkpoint_path, onnx_path, triton):
    repo = tmp_path_factory.mktemp("variants") / "repo"
    opts = configs.ServingOptions(serve_versions=2)
    for name in ("onnx", "ort-int8"):
        build = BuildOptions(name, speed_seconds=0.05, calibration_images=128)
        build_repository(checkpoint_path, onnx_path, repo, opts, build)
    with triton(repo) as server:
        yield server, repo


def offline_logits(repo, version: int, pixels: np.ndarray) -> np.ndarray:
    path = repo / C.CLASSIFIER / str(version) / "model.onnx"
    served = configs.read_config(repo / C.CLASSIFIER / "config.pbtxt")  # its threads
    threads = int(served.parameters["intra_op_thread_count"].string_value)
    session = variants.ort_session(path, threads)
    return session.run([C.LOGITS], {C.PIXELS: pixels})[0]


def test_each_version_served_equals_its_offline_predictions(
    two_variant_server, heldout_png, checkpoint
):
    server, repo = two_variant_server
    pixels = preprocess(heldout_png[:64], checkpoint.preprocessing())
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        for version in (1, 2):
            tensor = grpcclient.InferInput(C.PIXELS, list(pixels.shape), "FP32")
            tensor.set_data_from_numpy(pixels)
            served = client.infer(C.CLASSIFIER, [tensor], model_version=str(version))
            expected = offline_logits(repo, version, pixels)
            logits = served.as_numpy(C.LOGITS)
            assert np.array_equal(logits.argmax(1), expected.argmax(1))
            np.testing.assert_allclose(logits, expected, rtol=1e-4, atol=1e-4)
    finally:
        client.close()


def test_ensemble_serves_the_newest_version(two_variant_server, heldout_png, checkpoint):
    server, repo = two_variant_server
    pixels = preprocess(heldout_png, checkpoint.preprocessing())
    _, _, expected_ids = postprocess(offline_logits(repo, 2, pixels), 3, checkpoint.class_names)
    with Client(f"grpc://{server.grpc_url}", batch_size=32) as client:
        results = client.classify(heldout_png)
    assert [[p.class_id for p in r.predictions] for r in results] == expected_ids.tolist()
