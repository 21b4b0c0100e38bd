"""The launcher: ready only after a probe request went through, the server's own errors when a
model fails to load, and SIGINT/SIGTERM forwarded by `maas serve`."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from maas.access import Ports
from maas.backends import has_gpu
from maas.balancer import has_nginx
from maas.build.configs import check, read_config, to_pbtxt
from maas.errors import ServerError
from maas.processes import children, gone, in_group, stubs
from maas.prometheus import find_prometheus
from maas.runtime import names as C
from maas.serve import ServerConfig, TritonServer


def broken_copy(repository: Path, tmp_path: Path, model: str, override: str) -> Path:
    """A copy of the repository whose `model` runs its shipped step with `override` (methods
    of a subclass) in front: model.py is one import of the step class, so a subclass named
    TritonPythonModel appended to it takes its place."""
    copy = tmp_path / "repo"
    shutil.copytree(repository, copy)
    path = copy / model / "1" / "model.py"
    assert "as TritonPythonModel" in path.read_text()
    with path.open("a") as f:
        f.write(f"\n\nclass TritonPythonModel(TritonPythonModel):\n{override}")
    return copy


def test_model_that_fails_to_load_reports_server_errors(classifier_repository, tmp_path):
    repo = broken_copy(
        classifier_repository,
        tmp_path,
        C.POSTPROCESS,
        "    def initialize(self, args):\n        raise RuntimeError('labels unreadable')\n",
    )
    with pytest.raises(ServerError) as err:
        TritonServer(repo, ServerConfig(start_timeout=120)).start()
    assert "exited with code" in str(err.value)
    assert "labels unreadable" in str(err.value)


def test_ready_only_after_probe_passes(classifier_repository, tmp_path):
    """The models load and warm up (Triton says ready), then preprocess cannot serve: not
    ready for us."""
    repo = broken_copy(
        classifier_repository,
        tmp_path,
        C.PREPROCESS,
        "    def execute(self, requests):\n"
        "        if getattr(self, 'warmed_up', False):\n"
        "            raise RuntimeError('stub broken')\n"
        "        self.warmed_up = True\n"
        "        return super().execute(requests)\n",
    )
    with pytest.raises(ServerError, match="probe request failed in image_classifier") as err:
        TritonServer(repo, ServerConfig(start_timeout=120)).start()
    assert "stub broken" in str(err.value)


def maas_serve(repository: Path, ports: Ports, *extra: str) -> subprocess.Popen:
    maas = str(Path(sys.executable).with_name("maas"))
    flags = [f"--{kind}-port={getattr(ports, kind)}" for kind in ("http", "grpc", "metrics")]
    command = [maas, "serve", "--no-build", "--repository", str(repository), *flags, *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def read_until_ready(proc: subprocess.Popen, timeout: float = 120) -> str:
    deadline, lines = time.monotonic() + timeout, []
    for line in proc.stdout:
        lines.append(line)
        if "[maas] ready" in line or time.monotonic() > deadline:
            break
    return "".join(lines)


def tritonserver_child(pid: int, timeout: float = 60) -> int:
    """The pid of the tritonserver that process `pid` started, once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for kid, name in children(pid).items():
            if name == "tritonserver":
                return kid
        time.sleep(0.05)
    raise AssertionError(f"process {pid} started no tritonserver within {timeout} s")


def assert_port_closed(port: int) -> None:
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()


# Every family once (the start a newcomer sees, with no error line), the classifier alone for
# the other signal.
@pytest.mark.parametrize(
    "signum, served", [(signal.SIGTERM, "repository"), (signal.SIGINT, "classifier_repository")]
)
def test_serve_forwards_signal_and_exits_cleanly(request, signum, served):
    repository = request.getfixturevalue(served)
    ports = Ports.free()
    proc = maas_serve(repository, ports)  # not --quiet: the log a newcomer sees
    try:
        out = read_until_ready(proc)
        assert "[maas] ready" in out and f"HTTP {ports.http}" in out, out
        triton = tritonserver_child(proc.pid)
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0
        assert gone(triton, timeout=5)
        assert_port_closed(ports.http)
        after = proc.stdout.read()
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()
    # A healthy start shows no error line; without a GPU, one line says why CUDA's are hidden.
    assert not re.search(r"^E\d{4} ", out, re.MULTILINE), out
    # While Triton drains and unloads, the watchdog heals nothing (it used to see the models
    # go, reload them, then restart the server it was asked to stop).
    assert "[maas] unhealthy" not in after and "Traceback" not in after, after
    if not has_gpu():
        assert out.count("[maas] no GPU here") == 1


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_during_startup_leaves_no_server(classifier_repository, signum):
    """The signal lands after tritonserver was spawned, before it is ready (the gap where a
    Ctrl-C used to kill `maas` and orphan the server)."""
    ports = Ports.free()
    proc = maas_serve(classifier_repository, ports, "--quiet")
    try:
        triton = tritonserver_child(proc.pid)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        assert "[maas] ready" not in out
        assert gone(triton, timeout=5), "tritonserver outlived maas serve"
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def test_a_server_stopped_without_draining_leaves_nothing_behind(classifier_repository, triton):
    """`drain` off (the tests' and benchmark trials' servers): killed at once, and the shared
    memory of its Python stubs (named with the server's own prefix), which Triton removes only
    on a clean stop, removed too."""
    with triton(classifier_repository) as server:
        group, args = server.process.pid, server.process.args
        assert f"--backend-config=python,shm-region-prefix-name={server.shm_prefix}" in args
        assert "--exit-timeout-secs=5" in args  # what a draining stop gives Triton
        regions = sorted(Path("/dev/shm").glob(f"{server.shm_prefix}*"))
        assert len(regions) == sum(len(pids) for pids in stubs(group).values()) > 0
    assert gone(group, timeout=5)
    assert [r for r in regions if r.exists()] == [] and in_group(group) == []


def test_killed_launcher_takes_its_server_down(classifier_repository):
    """SIGKILL cannot be caught: the server is told by the kernel (parent-death signal)."""
    ports = Ports.free()
    proc = maas_serve(classifier_repository, ports, "--quiet")
    try:
        assert "[maas] ready" in read_until_ready(proc)
        triton = tritonserver_child(proc.pid)
        proc.kill()
        proc.wait()
        assert gone(triton), "tritonserver kept running after maas was killed"
        assert_port_closed(ports.http)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


# A launcher of nginx and Prometheus (as `maas fleet up` and `make soak` start them): argv is
# the replica's three ports, the balancer's HTTP and gRPC ports, Prometheus's port and config.
HELPERS = """
import sys, time
from pathlib import Path
from maas.balancer import Balancer, Nginx
from maas.prometheus import Prometheus, scrape_config
from maas.access import Ports
http, grpc, metrics, lb_http, lb_grpc, prometheus_port = map(int, sys.argv[1:7])
config = Path(sys.argv[7])
config.write_text(scrape_config([f"127.0.0.1:{metrics}"]))
nginx = Nginx([Ports(http, grpc, metrics)], Balancer(http=lb_http, grpc=lb_grpc)).start()
prometheus = Prometheus(config, prometheus_port).start()
print("pids", nginx.process.pid, prometheus.process.pid, flush=True)
time.sleep(600)
"""


@pytest.mark.skipif(
    not has_nginx() or find_prometheus() is None, reason="nginx, njs or prometheus missing"
)
def test_killed_launcher_takes_nginx_and_prometheus_down(server, tmp_path):
    """The fleet's nginx and Prometheus die with the process that started them, even by
    SIGKILL (parent-death signal, as tritonserver): none is left holding its port."""
    lb, replica = Ports.free(), server.ports
    ports = (replica.http, replica.grpc, replica.metrics, lb.http, lb.grpc, lb.metrics)
    proc = subprocess.Popen(
        [sys.executable, "-c", HELPERS, *map(str, ports), str(tmp_path / "prometheus.yml")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    helpers = []
    try:
        lines = []
        for line in proc.stdout:  # until it says the pids, or exits
            lines.append(line)
            if line.startswith("pids"):
                break
        assert lines and lines[-1].startswith("pids"), "".join(lines)
        nginx, prometheus = map(int, lines[-1].split()[1:])
        helpers = [nginx, *children(nginx), prometheus]
        assert len(helpers) > 2, "nginx started no workers"
        proc.kill()
        proc.wait()
        for pid in helpers:
            assert gone(pid, timeout=10), f"process {pid} outlived its launcher"
        for port in (lb.http, lb.grpc, lb.metrics):
            assert_port_closed(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in helpers:  # what a failure left behind
            if not gone(pid, timeout=0):
                os.kill(pid, signal.SIGKILL)


def test_config_check_agrees_with_triton(repository, tmp_path):
    """A config our check refuses is one the real tritonserver refuses too."""
    repo = tmp_path / "repo"
    shutil.copytree(repository / C.POSTPROCESS, repo / C.POSTPROCESS)
    config = read_config(repo / C.POSTPROCESS / "config.pbtxt")
    config.dynamic_batching.preferred_batch_size[:] = [16]
    config.max_batch_size = 8  # below the preferred batch size
    [problem] = check(config)
    (repo / C.POSTPROCESS / "config.pbtxt").write_text(to_pbtxt(config))
    with pytest.raises(ServerError, match="preferred size must be <= max batch size"):
        TritonServer(repo, ServerConfig(start_timeout=120)).start()
    assert "preferred size 16 must be <= max_batch_size 8" in problem


def test_serve_starts_a_dead_tritonserver_again(classifier_repository, heldout_png):
    """tritonserver itself killed, as a crash kills it: `maas serve` says so, starts it again
    on the same ports (health red meanwhile) and serves, then stops cleanly on SIGTERM."""
    import urllib.error
    import urllib.request

    from maas.clients.client import Client

    def health() -> int:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{health_port}/health", timeout=2) as a:
                return a.status
        except urllib.error.HTTPError as e:
            return e.code

    ports, health_port = Ports.free(), Ports.free().http
    proc = maas_serve(classifier_repository, ports, "--quiet", "--check-interval", "0.5",
                      "--health-port", str(health_port))  # fmt: skip
    try:
        assert "[maas] ready" in read_until_ready(proc)
        first = tritonserver_child(proc.pid)
        os.kill(first, signal.SIGKILL)
        deadline, red = time.monotonic() + 10, False
        while not red and time.monotonic() < deadline:
            red = health() == 503
            time.sleep(0.1)
        assert red, "/health stayed green with tritonserver dead"
        said = read_until(proc, "starting it again on the same ports")
        assert "tritonserver died (exit code -9)" in said, said
        deadline = time.monotonic() + 90
        while health() != 200:
            assert proc.poll() is None, proc.stdout.read()
            assert time.monotonic() < deadline, "not serving again in 90 s"
            time.sleep(0.2)
        second = tritonserver_child(proc.pid)
        assert second != first
        with Client(f"grpc://127.0.0.1:{ports.grpc}") as client:
            assert client.classify([heldout_png[0]])[0].top.label
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0
        assert gone(second, timeout=5)
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait()


def read_until(proc: subprocess.Popen, text: str, timeout: float = 30) -> str:
    deadline, lines = time.monotonic() + timeout, []
    for line in proc.stdout:
        lines.append(line)
        if text in line or time.monotonic() > deadline:
            break
    return "".join(lines)
