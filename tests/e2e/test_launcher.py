"""The launcher: ready only after a probe image went through, the server's own errors when a
model fails to load, and SIGINT/SIGTERM forwarded by `maas serve`."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maas import contract as C
from maas.serve import Ports, ServerError, TritonServer


def broken_copy(repository: Path, tmp_path: Path, model: str, replace: tuple[str, str]) -> Path:
    copy = tmp_path / "repo"
    shutil.copytree(repository, copy)
    path = copy / model / "1" / "model.py"
    text = path.read_text()
    assert replace[0] in text
    path.write_text(text.replace(*replace, 1))
    return copy


def test_model_that_fails_to_load_reports_server_errors(repository, tmp_path):
    repo = broken_copy(
        repository,
        tmp_path,
        C.POSTPROCESS,
        (
            "    def initialize(self, args):\n",
            "    def initialize(self, args):\n        raise RuntimeError('labels unreadable')\n",
        ),
    )
    with pytest.raises(ServerError) as err:
        TritonServer(repo, Ports.free(), start_timeout=120).start()
    assert "exited with code" in str(err.value)
    assert "labels unreadable" in str(err.value)


def test_ready_only_after_probe_passes(repository, tmp_path):
    """The models load (Triton says ready) but preprocess cannot serve: not ready for us."""
    repo = broken_copy(
        repository,
        tmp_path,
        C.PREPROCESS,
        (
            "    def execute(self, requests):\n",
            "    def execute(self, requests):\n        raise RuntimeError('stub broken')\n",
        ),
    )
    config = repo / C.PREPROCESS / "config.pbtxt"
    # Warm-up would catch this at load time; drop it to reach the case Triton calls ready.
    text = config.read_text()
    config.write_text(text[: text.index("model_warmup")])
    with pytest.raises(ServerError, match="probe image failed") as err:
        TritonServer(repo, Ports.free(), start_timeout=120).start()
    assert "stub broken" in str(err.value)


def test_serve_forwards_sigint_and_exits_cleanly(repository):
    ports = Ports.free()
    maas = str(Path(sys.executable).with_name("maas"))
    proc = subprocess.Popen(
        [
            maas,
            "serve",
            "--no-build",
            "--quiet",
            "--repository",
            str(repository),
            "--http-port",
            str(ports.http),
            "--grpc-port",
            str(ports.grpc),
            "--metrics-port",
            str(ports.metrics),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "[maas] ready" in line or time.monotonic() > deadline:
                break
        assert any("[maas] ready" in ln for ln in lines), "".join(lines)
        assert f"HTTP {ports.http}" in "".join(lines)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=60) == 0
        # The server went with it: nothing listens on its port any more.
        with pytest.raises(ConnectionRefusedError):
            import socket

            socket.create_connection(("127.0.0.1", ports.http), timeout=2).close()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
