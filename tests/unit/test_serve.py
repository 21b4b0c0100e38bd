"""The launcher's pieces that need no server: the backends folder it lays out, and which of
Triton's log lines a CPU-only start hides."""

from __future__ import annotations

import io
import sys

import pytest

from maas.backends import STUB, python_backend_dir
from maas.serve import ServerConfig, TritonServer

CPU_START = """\
E1201 19:40:40.677211 5740 server.cc:241] "CudaDriverHelper has not been initialized."
I1201 19:40:40.678768 5740 model_lifecycle.cc:472] "loading: preprocess:1"
W1201 19:40:42.170759 5740 pinned_memory_manager.cc:170] "failed to allocate pinned system memory: no pinned memory pool, falling back to non-pinned system memory"
E1201 19:40:42.809493 5740 ensemble_scheduler.cc:1468] "unable to create stream for image_classifier: CUDA driver version is insufficient for CUDA runtime version"
E1201 19:40:43.000000 5740 model_lifecycle.cc:641] "failed to load 'postprocess': labels unreadable"
"""  # noqa: E501 - Triton's own lines, verbatim


def wheel_layout(root, *, stub_in_python_folder: bool):
    """The nvidia-pytriton wheel's tritonserver/ folder, as far as the launcher reads it."""
    backends = root / "backends"
    (backends / "python").mkdir(parents=True)
    (backends / "python" / "libtriton_python.so").write_text("backend")
    (backends / "python" / "triton_python_backend_utils.py").write_text("utils")
    if stub_in_python_folder:  # what a set-up step or another tool may have put there
        (backends / "python" / STUB).write_text("stub for another Python")
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for v in ("3.8", version):
        (root / "python_backend_stubs" / v).mkdir(parents=True, exist_ok=True)
        (root / "python_backend_stubs" / v / STUB).write_text(f"stub for {v}")
    return backends, version


def test_backend_dir_tolerates_a_stub_already_in_the_wheel(tmp_path):
    for existing in (False, True):
        root = tmp_path / f"wheel-{existing}"
        backends, version = wheel_layout(root, stub_in_python_folder=existing)
        into = tmp_path / f"backends-{existing}"
        into.mkdir()
        out = python_backend_dir(backends, into)
        # The stub is the one built for the running Python, whatever the wheel's folder held.
        assert (out / "python" / STUB).read_text() == f"stub for {version}"
        assert sorted(p.name for p in (out / "python").iterdir()) == sorted(
            ["libtriton_python.so", "triton_python_backend_utils.py", STUB]
        )
        assert (backends / "python" / STUB).exists() == existing  # the wheel is not touched


def replay(server: TritonServer, text: str) -> None:
    server.log.read(io.StringIO(text))


def test_cpu_only_start_hides_cuda_noise_and_keeps_real_errors(tmp_path, capsys):
    server = TritonServer(tmp_path, ServerConfig(echo=True))
    server.log.gpu = False  # what the log hides depends on it alone
    replay(server, CPU_START)
    shown = capsys.readouterr().out.splitlines()
    assert [ln for ln in shown if ln.startswith("[maas]")] == [
        "[maas] no GPU here: Triton's CUDA start-up messages are expected on a CPU-only "
        "machine and are not shown"
    ]
    assert [ln[:1] for ln in shown if not ln.startswith("[maas]")] == ["I", "E"]
    assert "labels unreadable" in shown[-1]
    assert server.log.errors().splitlines() == [CPU_START.splitlines()[-1]]
    assert len(server.log) == 5  # all kept for whoever reads the log


def test_with_a_gpu_nothing_is_hidden(tmp_path, capsys):
    server = TritonServer(tmp_path, ServerConfig(echo=True))
    server.log.gpu = True
    replay(server, CPU_START)
    assert capsys.readouterr().out == CPU_START
    assert "CudaDriverHelper" in server.log.errors()


def test_serve_warns_when_tritonservers_http_leaves_loopback():
    from maas.cli.serving import exposure_warning

    assert exposure_warning("127.0.0.1") is None and exposure_warning("localhost") is None
    warning = exposure_warning("0.0.0.0")
    assert "listens on 0.0.0.0" in warning and "maas fleet up" in warning


def test_with_tls_nothing_listens_in_plaintext_off_loopback(tmp_path):
    from maas.access import TLS

    for name in ("cert.pem", "key.pem"):
        (tmp_path / name).write_text("x")
    tls = TLS(cert=tmp_path / "cert.pem", key=tmp_path / "key.pem")
    served = TritonServer(tmp_path, ServerConfig(host="0.0.0.0", tls=tls))
    plain = TritonServer(tmp_path, ServerConfig(host="0.0.0.0"))
    assert [served.host_of(k) for k in ("grpc", "http", "metrics", "health")] == [
        "0.0.0.0", "127.0.0.1", "127.0.0.1", "127.0.0.1",
    ]  # fmt: skip
    assert {plain.host_of(k) for k in ("grpc", "http", "metrics", "health")} == {"0.0.0.0"}


def test_every_model_loads_at_once_and_each_server_names_its_own_shared_memory(tmp_path):
    """4 to 32 models loaded at once (Triton's default is 4); one shared-memory prefix a
    server, what maas removes after a server that did not stop cleanly."""
    for i in range(40):
        (tmp_path / f"m{i}").mkdir()
        (tmp_path / f"m{i}" / "config.pbtxt").write_text("")
    many, one = TritonServer(tmp_path), TritonServer(tmp_path / "m0")
    assert many.load_threads() == 32 and one.load_threads() == 4
    assert many.shm_prefix != one.shm_prefix and many.shm_prefix.startswith("maas_")


@pytest.mark.parametrize(
    ("model_py", "instance", "model"),
    [
        ("/srv/repo/gan_png/1/model.py", "gan_png_0_1", "gan_png"),
        ("/tmp/folderbKWC1q/1/model.py", "postprocess_0_0", "postprocess"),  # read from S3
        ("/srv/repo/preprocess/1/model.py", None, "preprocess"),  # no instance name given
    ],
)
def test_a_stub_is_known_by_its_instance_name_then_its_path(model_py, instance, model):
    """The watchdog's census counts stubs by model: a replica serving an s3:// repository ran
    every stub from a temporary folder, which the path alone took for the model's name."""
    from maas.processes import stub_model

    args = ["/x/triton_python_backend_stub", model_py, "shm", "1", "1", "6648", "/x", "336"]
    assert stub_model(args + ([instance, "DEFAULT"] if instance else [])) == model
