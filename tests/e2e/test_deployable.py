"""The repository is the deployable unit: what `maas build` writes loads on a stock tritonserver,
anywhere, and answers as under `maas serve`.

The conditions of NVIDIA's container (nvcr.io/nvidia/tritonserver:24.10-py3), reproduced here:
the built repository copied to another folder; the server started from a working folder
outside the checkout, with Triton's default model control (every model must load, or the
server does not start) and every config.pbtxt as written; its native onnxruntime backend
(../shared/tools here, as in the container); the stubs running a Python that has numpy<2 and
nothing else (no maas, no Pillow, no onnxruntime): 3.10 as the container's where this machine
has one. And the served ONNX graphs loaded in the container's ONNX Runtime version (1.19.2).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tritonclient.http as httpclient

from maas import container
from maas.backends import backend_dir_default
from maas.build.configs import numpy_dtype, read_config
from maas.build.release import CONTAINER_PYTHON, TRITON_ONNXRUNTIME
from maas.clients.client import Client
from maas.runtime import names as C
from maas.serve import ServerConfig


@pytest.fixture(scope="module")
def container_python() -> Path:
    """The stubs' Python of a stock container: numpy<2 alone, Python 3.10 where there is one."""
    python = container.container_python()
    for package in ("maas", "PIL", "onnxruntime"):
        found = subprocess.run([str(python), "-c", f"import {package}"], capture_output=True,
                               cwd="/")  # not the checkout's folder, which holds maas/  # fmt: skip
        assert found.returncode != 0, f"the container's Python must not have {package}"
    return python


@pytest.fixture(scope="module")
def deployed(repository, container_python, tmp_path_factory, triton):
    """The session's repository, copied elsewhere, served as a stock container serves it."""
    backends = backend_dir_default()
    if backends is None:
        pytest.skip(
            "needs Triton's onnxruntime backend, as every Triton container has (set "
            "MAAS_BACKEND_DIR: the Makefile and .ci/run take ../shared/tools)"
        )
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    copy = shutil.copytree(repository, elsewhere / "model_repository")
    server = triton(copy, ServerConfig(
        backend_dir=backends, python=container_python, model_control="none", cwd=elsewhere,
    ))  # fmt: skip
    with server:
        assert server.config_name is None  # every config.pbtxt as written
        yield server


def test_every_model_loads_on_a_stock_server(deployed, repository):
    assert deployed.python.version in (CONTAINER_PYTHON, container.OURS)
    client = httpclient.InferenceServerClient(deployed.http_url)
    try:
        index = client.get_model_repository_index(headers=deployed.keys.headers)
    finally:
        client.close()
    built = {p.parent.name for p in repository.glob("*/config.pbtxt")}
    assert {m["name"] for m in index if m.get("state") == "READY"} == built
    assert len(built) >= 27


def _answers(url: str, pngs: list[bytes], series: list[float]) -> dict:
    """One request of every kind through every family, over `url`."""
    with Client(url) as client:
        last = len(series) - 1
        stream = [
            client.observe(4242, v, start=i == 0, end=i == last).next for i, v in enumerate(series)
        ]
        return {
            "classify": [
                [(p.label, round(p.score, 5)) for p in c.predictions]
                for c in client.classify(pngs, top_k=3)
            ],
            "forecast": client.forecast(series, 12),
            "stream": stream,
            "generate": client.generate(3, seed=7, count=4),
            "sample": client.sample(seed=11, count=3),
            "encode": np.round(client.encode(pngs[:8]), 5).tolist(),
            "reconstruct": client.reconstruct(pngs[:4]),
            "colours": [c.top.label for c in Client(url, model="colours").classify(pngs[:4])],
        }


def test_every_pipeline_answers_as_under_maas_serve(deployed, native_server, heldout_png):
    """Same top-k and scores, forecasts, stream, PNG bytes for a seed, codes, as maas serve
    (with this machine's native backend) gives for the same repository."""
    months = np.arange(80)
    series = (350 + 0.1 * months + 3 * np.sin(2 * np.pi * months / 12)).tolist()
    here = _answers(deployed.url("grpc"), heldout_png[:64], series)
    there = _answers(native_server.url("grpc"), heldout_png[:64], series)
    np.testing.assert_array_equal(here.pop("stream"), there.pop("stream"))  # NaN until a window
    for kind in there:
        assert here[kind] == there[kind], kind


def test_every_image_format_decodes_through_the_steps_own_environment(deployed):
    """Pillow comes from the image step's environment (EXECUTION_ENV_PATH), built for the
    stubs' Python: each format it decodes, decoded."""
    import io

    from PIL import Image

    encoded = []
    for fmt in ("PNG", "JPEG", "WEBP", "TIFF", "GIF", "BMP"):
        buf = io.BytesIO()
        Image.new("RGB", (48, 40), (230, 20, 30)).save(buf, format=fmt)
        encoded.append(buf.getvalue())
    with Client(deployed.url("http"), model="colours") as client:
        assert [r.top.label for r in client.classify(encoded)] == ["red"] * len(encoded)


ORT_CHECK = """
import json, sys, numpy as np, onnxruntime as ort
data = np.load(sys.argv[1])
out = {}
for path in json.loads(sys.argv[2]):
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feeds = {i.name: data[f"{path}:{i.name}"] for i in session.get_inputs()}
    for o, value in zip(session.get_outputs(), session.run(None, feeds)):
        out[f"{path}:{o.name}"] = value
np.savez(sys.argv[3], **out)
print(ort.__version__)
"""


def test_the_served_graphs_load_and_answer_alike_on_the_containers_onnx_runtime(
    repository, tmp_path
):
    """Every core version's model.onnx, run by ONNX Runtime 1.19.2 (what Triton 24.10's
    onnxruntime backend loads) and by ours, on the same inputs: the gated answers."""
    import onnxruntime as ort

    python = container.venv_with(
        Path(sys.prefix) / f"maas-onnxruntime{TRITON_ONNXRUNTIME}", sys.executable,
        container.NUMPY, f"onnxruntime=={TRITON_ONNXRUNTIME}",
    )  # fmt: skip
    rng = np.random.default_rng(0)
    feeds, paths = {}, []
    for config_path in sorted(repository.glob("*/config.pbtxt")):
        config = read_config(config_path)
        if config.backend != "onnxruntime":
            continue
        for version in config.version_policy.specific.versions:
            path = str(config_path.parent / str(version) / "model.onnx")
            paths.append(path)
            for t in config.input:
                dtype = numpy_dtype(t.data_type)
                value = rng.random((4, *t.dims)) * (255 if t.name == C.PIXELS else 1)
                feeds[f"{path}:{t.name}"] = value.astype(dtype)
    assert len(paths) >= 6
    np.savez(tmp_path / "in.npz", **feeds)
    run = subprocess.run(
        [str(python), "-c", ORT_CHECK, str(tmp_path / "in.npz"), json.dumps(paths),
         str(tmp_path / "out.npz")], capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip() == TRITON_ONNXRUNTIME
    theirs = np.load(tmp_path / "out.npz")
    for path in paths:
        session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        inputs = {i.name: feeds[f"{path}:{i.name}"] for i in session.get_inputs()}
        for o, ours in zip(session.get_outputs(), session.run(None, inputs), strict=True):
            np.testing.assert_allclose(theirs[f"{path}:{o.name}"], ours, rtol=1e-4, atol=1e-4)


def test_the_pods_probe_passes_then_fails_when_a_python_step_dies(deployed, container_python):
    """deploy/k8s/probe.py (the pods' exec readiness probe), run with the container's bare
    Python on the repository's probes.json: ready while every pipeline answers; a preprocess
    stub SIGKILLed (Triton still says ready) and it names what fails. Last: it breaks the
    module's server."""
    import os
    import signal

    from maas.probe import PROBES_FILE
    from maas.processes import stubs

    script = Path(__file__).parents[2] / "deploy" / "k8s" / "probe.py"
    probe = [str(container_python), str(script), "--probes",
             str(deployed.repository / PROBES_FILE), "--url", deployed.url("http")]  # fmt: skip
    pipelines = len(json.loads((deployed.repository / PROBES_FILE).read_text())["pipelines"])
    ready = subprocess.run(probe, capture_output=True, text=True, timeout=120, cwd="/")
    assert ready.returncode == 0, ready.stderr
    assert ready.stdout.strip() == f"{pipelines} of {pipelines} pipelines answered"
    for pid in stubs(deployed.process.pid)[C.PREPROCESS]:
        os.kill(pid, signal.SIGKILL)
    client = httpclient.InferenceServerClient(deployed.http_url)
    try:
        assert client.is_server_ready()  # what an httpGet probe would believe
    finally:
        client.close()
    dead = subprocess.run(probe, capture_output=True, text=True, timeout=120, cwd="/")
    assert dead.returncode == 1
    assert f"{C.ENSEMBLE}: HTTP" in dead.stderr and "is not healthy" in dead.stderr
    assert dead.stdout.strip() == f"{pipelines - 1} of {pipelines} pipelines answered"
