"""A wheel that works: `pip install` of the built wheel into a fresh virtual environment, with
no checkout anywhere on the path, gives a `maas` whose build (a user's own ONNX, and a family
retrained from scratch) and serve work: the steps' code is package code (maas.runtime).

The fresh environment gets the wheel alone (--no-deps); its dependencies come from this venv's
site-packages through a .pth line, so that the test costs no download and no torch install.
That line adds a folder, not its .pth files: this venv's editable hook to the checkout stays
unread, and `import maas` is the wheel's (checked)."""

from __future__ import annotations

import shutil
import signal
import site
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from maas.access import Ports
from maas.clients.client import Client

CHECKOUT = Path(__file__).parents[2]
IGNORED = shutil.ignore_patterns(
    ".git", ".venv*", "artifacts", "model_repository", "__pycache__", "*.egg-info",
    ".setuptools-build", ".maas-fleet", "dist",
)  # fmt: skip


def run(*args, cwd: Path, timeout: float = 600) -> str:
    done = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)  # fmt: skip
    assert done.returncode == 0, f"{args}:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The bin/ folder of a fresh venv holding the wheel built from a copy of the sources."""
    work = tmp_path_factory.mktemp("wheel")
    source = shutil.copytree(CHECKOUT, work / "source", ignore=IGNORED)
    run(sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", work / "dist",
        source, cwd=work)  # fmt: skip
    [wheel] = (work / "dist").glob("maas-*.whl")
    shutil.rmtree(source)  # no checkout left anywhere
    venv = work / "venv"
    run(sys.executable, "-m", "venv", venv, cwd=work)
    [packages] = venv.glob("lib/python*/site-packages")
    (packages / "dependencies.pth").write_text(site.getsitepackages()[0] + "\n")
    run(venv / "bin" / "python", "-m", "pip", "install", "-q", "--no-deps", "--no-index", wheel,
        cwd=work)  # fmt: skip
    where = run(venv / "bin" / "python", "-c", "import maas; print(maas.__file__)", cwd=work)
    assert where.startswith(str(packages)), where
    return venv / "bin"


def test_the_wheel_builds_your_onnx_and_a_family_and_serves_them(installed, own_onnx, tmp_path):
    maas = installed / "maas"
    repo = tmp_path / "model_repository"
    onnx_path, labels = own_onnx
    run(maas, "build", "image_classifier", "--onnx", onnx_path, "--labels", labels,
        "--name", "colours", "--repository", repo, "--variant", "onnx", "--speed-seconds", "0.1",
        cwd=tmp_path)  # fmt: skip
    run(maas, "train", "forecaster", "--epochs", "3", "--no-plot", cwd=tmp_path)  # -> ./artifacts
    run(maas, "export", "forecaster", cwd=tmp_path)
    run(maas, "build", "forecaster", "--repository", repo, "--variant", "onnx",
        "--speed-seconds", "0.1", cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "artifacts" / "forecaster" / "checkpoint.pt").is_file()

    ports = Ports.free()
    server = subprocess.Popen(
        [str(maas), "serve", "--no-build", "--quiet", "--repository", str(repo),
         "--http-port", str(ports.http), "--grpc-port", str(ports.grpc),
         "--metrics-port", str(ports.metrics)],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        said = []
        deadline = time.monotonic() + 180
        while not any("[maas] ready" in line for line in said):
            line = server.stdout.readline()
            assert line or server.poll() is None, "".join(said)[-3000:]
            said.append(line)
            assert time.monotonic() < deadline, "".join(said)[-3000:]
        url = f"grpc://127.0.0.1:{ports.grpc}"
        with Client(url, model="colours") as client:
            red = _png((230, 20, 30))
            assert client.classify([red])[0].top.label == "red"
        with Client(url) as client:
            months = np.arange(60)
            answer = client.forecast((350 + 3 * np.sin(2 * np.pi * months / 12)).tolist())
            assert len(answer.values) == 12 and all(np.isfinite(answer.values))
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(60)


def _png(colour) -> bytes:
    from maas.runtime.png import encode_png

    return encode_png(np.full((40, 48, 3), colour, np.uint8))
