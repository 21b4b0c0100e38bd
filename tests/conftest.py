"""Session fixtures: one short training run, its export and repository, one real tritonserver.

Tests are tiered by folder: tests/unit (no server) and tests/e2e (the real tritonserver,
started once per session on free ports and always stopped); each is marked automatically.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from maas.transforms import encode_png

TESTS = Path(__file__).parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        tier = Path(item.fspath).relative_to(TESTS).parts[0]
        if tier == "e2e":
            item.add_marker(pytest.mark.e2e)


@pytest.fixture(scope="session")
def digits():
    from maas.training.data import load_digits

    return load_digits(seed=0)


@pytest.fixture(scope="session")
def checkpoint_path(tmp_path_factory, digits) -> Path:
    """A real model trained briefly on the real digits (a few seconds on 2 cores)."""
    from maas.training.train import TrainConfig, train

    out = tmp_path_factory.mktemp("train") / "checkpoint.pt"
    train(TrainConfig(out=str(out), epochs=6, plot=True), dataset=digits)
    return out


@pytest.fixture(scope="session")
def checkpoint(checkpoint_path):
    from maas.training.checkpoint import Checkpoint

    return Checkpoint.load(checkpoint_path)


@pytest.fixture(scope="session")
def onnx_path(checkpoint_path, digits) -> Path:
    from maas.training.export import export

    out = checkpoint_path.with_name("model.onnx")
    export(checkpoint_path, out, parity_batch=digits.test_x[:64])
    return out


@pytest.fixture(scope="session")
def repository(tmp_path_factory, checkpoint_path, onnx_path) -> Path:
    from maas.build.repository import BuildOptions, build_repository

    return build_repository(
        checkpoint_path,
        onnx_path,
        tmp_path_factory.mktemp("serve") / "model_repository",
        build=BuildOptions(variant="onnx", speed_seconds=0.1),
    )


@pytest.fixture(scope="session")
def heldout_png(digits) -> list[bytes]:
    """The held-out digits as PNG files: what a user would upload."""
    return [encode_png(x) for x in digits.test_x]


@pytest.fixture(scope="session")
def offline(onnx_path, checkpoint, heldout_png):
    """Offline reference: the same bytes through maas.transforms and ONNX Runtime."""
    import onnxruntime as ort

    from maas.transforms import postprocess, preprocess

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(
        ["LOGITS"], {"PIXELS": preprocess(heldout_png, checkpoint.preprocessing())}
    )[0]
    labels, scores, ids = postprocess(logits, 3, checkpoint.class_names)
    return {"logits": logits, "labels": labels, "scores": scores, "ids": ids}


@pytest.fixture(scope="session")
def server(repository):
    from maas.serve import Ports, TritonServer

    with TritonServer(repository, Ports.free()) as srv:
        yield srv


@pytest.fixture(scope="session")
def model_counts(server):
    """model name -> (inference_count, execution_count) now, from Triton's statistics API."""
    import tritonclient.grpc as grpcclient

    def counts(name: str) -> tuple[int, int]:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            stats = client.get_inference_statistics(name, as_json=True)["model_stats"][0]
        finally:
            client.close()
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    return counts
