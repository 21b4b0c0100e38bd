"""Session fixtures: one short training run, its export and repository, one real tritonserver.

Tests are tiered by folder: tests/unit (no server) and tests/e2e (the real tritonserver,
started once per session on free ports and always stopped); each is marked automatically.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from maas.runtime.png import encode_png

TESTS = Path(__file__).parent


def eventually(check, seconds: float = 10.0) -> bool:
    """Whether `check()` turns true within `seconds` (an nginx reload takes effect within
    moments, not at once)."""
    import time

    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


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
def forecaster_path(tmp_path_factory) -> Path:
    """The GRU trained briefly on the real CO2 series (a few seconds on 2 cores)."""
    from maas.training.rnn import ForecasterConfig, train_forecaster

    out = tmp_path_factory.mktemp("forecaster") / "checkpoint.pt"
    train_forecaster(ForecasterConfig(out=str(out), epochs=25))
    return out


@pytest.fixture(scope="session")
def forecaster(forecaster_path):
    from maas.training.rnn import ForecasterCheckpoint

    return ForecasterCheckpoint.load(forecaster_path)


@pytest.fixture(scope="session")
def forecaster_onnx(forecaster_path) -> Path:
    from maas.training.rnn import export_forecaster

    out = forecaster_path.with_name("model.onnx")
    export_forecaster(forecaster_path, out)
    return out


@pytest.fixture(scope="session")
def vae_path(tmp_path_factory, checkpoint_path) -> Path:
    """The VAE on its defaults (~20 s on 2 cores), judged by the session's classifier; its
    encoder.onnx and decoder.onnx beside it."""
    from maas.training.vae import VAEConfig, export_vae, train_vae

    out = tmp_path_factory.mktemp("vae") / "checkpoint.pt"
    train_vae(VAEConfig(out=str(out), judge=str(checkpoint_path), plot=False))
    export_vae(out, out.with_name("encoder.onnx"))
    return out


@pytest.fixture(scope="session")
def gan_path(tmp_path_factory, checkpoint_path) -> Path:
    """The GAN on its defaults (~30 s on 2 cores), judged by the session's classifier; its
    model.onnx beside it."""
    from maas.training.gan import GANConfig, export_gan, train_gan

    out = tmp_path_factory.mktemp("gan") / "checkpoint.pt"
    train_gan(GANConfig(out=str(out), judge=str(checkpoint_path), plot=False))
    export_gan(out, out.with_name("model.onnx"))
    return out


COLOURS = ["red", "green", "blue", "grey"]


def colour_classifier(path: Path, height: int = 48, width: int = 40, classes: int = 4) -> Path:
    """A user's own ONNX, made here: an image's mean R, G, B -> which colour dominates, or
    grey. Input "image" FP32 [N, 3, 48, 40], output "scores" FP32 [N, 4]; other names and
    sizes than ours, and known answers."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.array([[2, -1, -1, 0], [-1, 2, -1, 0], [-1, -1, 2, 0]], np.float32)[:, :classes]
    graph = helper.make_graph(
        [
            helper.make_node("GlobalAveragePool", ["image"], ["means"]),
            helper.make_node("Flatten", ["means"], ["rgb"]),
            helper.make_node("Gemm", ["rgb", "w", "b"], ["scores"]),
        ],
        "colours",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, height, width])],
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["n", classes])],
        initializer=[
            numpy_helper.from_array(weights, "w"),
            numpy_helper.from_array(np.array([0, 0, 0, 0.3], np.float32)[:classes], "b"),
        ],
    )
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="session")
def own_onnx(tmp_path_factory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("own")
    (folder / "labels.txt").write_text("\n".join(COLOURS) + "\n")
    return colour_classifier(folder / "colours.onnx"), folder / "labels.txt"


@pytest.fixture(scope="session")
def repository(
    tmp_path_factory,
    checkpoint_path,
    onnx_path,
    forecaster_path,
    forecaster_onnx,
    vae_path,
    gan_path,
    own_onnx,
) -> Path:
    """The four families built into one repository, as `make serve` builds them, and a
    user's own ONNX classifier beside them (`maas build image_classifier --onnx ...`)."""
    from maas.build.own_model import build_own_onnx
    from maas.build.repository import BuildOptions, build_repository

    target = tmp_path_factory.mktemp("serve") / "model_repository"
    fast = BuildOptions(variant="onnx", speed_seconds=0.1)
    build_repository(checkpoint_path, onnx_path, target, build=fast)
    build_repository(forecaster_path, forecaster_onnx, target, build=fast, family="forecaster")
    build_repository(vae_path, vae_path.with_name("encoder.onnx"), target, build=fast, family="vae")
    build_repository(gan_path, gan_path.with_name("model.onnx"), target, build=fast, family="gan")
    return build_own_onnx(*own_onnx, target, "colours", build=fast)


@pytest.fixture(scope="session")
def classifier_repository(repository, tmp_path_factory) -> Path:
    """The image classifier's pipeline alone, copied from the session's repository: for the
    tests that start servers of their own (S3, a fleet), a quicker start than every family."""
    import shutil

    from maas.runtime import names as C

    target = tmp_path_factory.mktemp("classifier") / "model_repository"
    for model in (C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS, C.ENSEMBLE):
        shutil.copytree(repository / model, target / model, ignore=shutil.ignore_patterns("__py*"))
    return target


@pytest.fixture(scope="session")
def heldout_png(digits) -> list[bytes]:
    """The held-out digits as PNG files: what a user would upload."""
    return [encode_png(x) for x in digits.test_x]


@pytest.fixture(scope="session")
def offline(onnx_path, checkpoint, heldout_png):
    """Offline reference: the same bytes through maas.runtime.images and ONNX Runtime."""
    import onnxruntime as ort

    from maas.runtime.classify import postprocess
    from maas.runtime.images import preprocess

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = session.run(
        ["LOGITS"], {"PIXELS": preprocess(heldout_png, checkpoint.preprocessing())}
    )[0]
    labels, scores, ids = postprocess(logits, 3, checkpoint.class_names)
    return {"logits": logits, "labels": labels, "scores": scores, "ids": ids}


@pytest.fixture(scope="session")
def triton():
    """TritonServer for a test's own server, stopped at once when the test is done with it
    (`drain` off: nothing is in flight by then) instead of in Triton's 3-4 s unload. Draining
    is tested where it is the point (test_self_healing.py, test_launcher.py, test_fleet.py)."""
    import dataclasses

    from maas.serve import ServerConfig, TritonServer

    def make(repository: Path, config: ServerConfig | None = None) -> TritonServer:
        return TritonServer(repository, dataclasses.replace(config or ServerConfig(), drain=False))

    return make


@pytest.fixture(scope="session")
def server(repository, triton):
    with triton(repository) as srv:
        yield srv


@pytest.fixture(scope="session")
def native_server(repository, triton):
    """The same repository with the core models on Triton's onnxruntime backend, where the
    machine has one for this tritonserver ($MAAS_BACKEND_DIR: .ci/run and the Makefile set it
    from the shared tools); else the tests that use it are skipped."""
    from maas.backends import backend_dir_default
    from maas.serve import ServerConfig

    folder = backend_dir_default()
    if folder is None:
        pytest.skip("no onnxruntime backend for this tritonserver (set MAAS_BACKEND_DIR)")
    with triton(repository, ServerConfig(backend_dir=folder)) as srv:
        assert srv.config_name is None  # config.pbtxt as written: the native backend
        yield srv


@pytest.fixture(scope="session", params=["python", "onnxruntime"])
def classifier_server(request):
    """Both classifier paths: the session server (the Python backend running ONNX Runtime, the
    fallback anywhere) and native_server (Triton's onnxruntime backend)."""
    return request.getfixturevalue("server" if request.param == "python" else "native_server")


@pytest.fixture(scope="session")
def model_counts():
    """(model name, server) -> (inference_count, execution_count) now, from Triton's
    statistics API."""
    import tritonclient.grpc as grpcclient

    def counts(name: str, server) -> tuple[int, int]:
        client = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            stats = client.get_inference_statistics(name, as_json=True)["model_stats"][0]
        finally:
            client.close()
        return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))

    return counts


@pytest.fixture(scope="session")
def s3():
    """moto's standalone S3 server on 127.0.0.1 (a free port): the local stand-in for AWS S3 or
    MinIO. Yields the AWS_* variables that point boto3 and tritonserver at it; stopped by its
    process id."""
    import os
    import subprocess
    import sys
    import time
    import urllib.request

    from maas.access import Ports

    port = Ports.free().http
    moto = Path(sys.executable).with_name("moto_server")
    proc = subprocess.Popen(
        [str(moto), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "moto_server exited"
                time.sleep(0.1)
        env = {
            "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": endpoint,
        }  # fmt: skip
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)  # boto3 in this process (maas.publish.s3_client) reads these
        yield env
    finally:
        for k, v in locals().get("saved", {}).items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        proc.terminate()
        proc.wait(10)
