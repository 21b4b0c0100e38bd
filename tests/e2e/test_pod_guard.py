"""The Kubernetes pod's guard as deploy/k8s/triton.yaml runs it: the guard container's own
script (nginx, reloaded when the Secret's nginx.conf changes) on the config `maas pod-guard
--tenants` writes, in front of the session's real tritonserver. A tenant's key is admitted over
HTTP and gRPC and an unknown one refused; a tenant added to the file is admitted after the
reload, with nginx's master unchanged; a config nginx refuses is not loaded; SIGTERM stops it."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml
from conftest import eventually

from maas.access import Ports
from maas.balancer import GUARD, TEMP_KINDS, has_nginx, require_nginx, worker_user
from maas.cli import main as cli
from maas.clients.client import Client
from maas.clients.connection import Retry
from maas.clients.errors import NotAuthorized

pytestmark = pytest.mark.skipif(not has_nginx(), reason="nginx or its njs module missing")

MANIFEST = Path(__file__).parents[2] / "deploy" / "k8s" / "triton.yaml"
POD_GUARD = "/etc/nginx/maas"  # the guard's folder in the pod
POD_CONF = f"{POD_GUARD}/nginx.conf"


def guard_container() -> dict:
    [deployment] = [d for d in yaml.safe_load_all(MANIFEST.read_text()) if d and
                    d["kind"] == "Deployment"]  # fmt: skip
    [guard] = [c for c in deployment["spec"]["template"]["spec"]["containers"]
               if c["name"] == "guard"]  # fmt: skip
    return guard


def write_tenants(path: Path, keys: dict[str, str]) -> Path:
    table = {name: {"key": key, "rate": 1000, "burst": 1000} for name, key in keys.items()}
    path.unlink(missing_ok=True)
    path.touch(0o600)
    path.write_text(json.dumps({"tenants": table}))
    return path


def admitted(url: str, key: str, png: bytes) -> bool:
    with Client(url, key=key, retry=Retry(attempts=1)) as client:
        try:
            return bool(client.classify([png])[0].predictions)
        except NotAuthorized:
            return False


@pytest.fixture
def pod(server, tmp_path, monkeypatch):
    """The guard's script from the manifest, its conf rendered as `maas pod-guard` renders it
    but with this machine's paths and ports (the pod's are nginx.org's image's)."""
    binary, module = require_nginx()
    folder = tmp_path / "pod"
    for kind in TEMP_KINDS:
        (folder / "tmp" / kind).mkdir(parents=True)
    user = worker_user(folder) if os.geteuid() == 0 else None
    ports = Ports.free()
    here = {
        "js_module": module, "scratch": folder / "tmp", "guard_dir": GUARD.parent, "user": user,
        "http_listen": f"127.0.0.1:{ports.http}", "grpc_listen": f"127.0.0.1:{ports.grpc}",
        "triton_http": server.ports.http, "triton_grpc": server.ports.grpc,
    }  # fmt: skip
    import maas.balancer

    monkeypatch.setattr(maas.balancer, "POD", {**maas.balancer.POD, **here})
    conf = folder / "nginx.conf"
    guard = guard_container()
    script = guard["args"][0].replace(POD_CONF, str(conf))
    script = script.replace(f"{POD_GUARD}/{GUARD.name}", str(GUARD))
    assert POD_GUARD not in script
    env = {e["name"]: e["value"] for e in guard["env"]}
    started: list[subprocess.Popen] = []

    def start(interval: str) -> subprocess.Popen:
        """The script, looking at its files every `interval` s (the manifest's: 10); what it
        and nginx say goes to said.log."""
        path = f"{Path(binary).parent}:{os.environ['PATH']}"
        with open(tmp_path / "said.log", "ab") as said:
            started.append(subprocess.Popen(
                [*guard["command"], script], stdout=said, stderr=said, start_new_session=True,
                env={**env, "MAAS_GUARD_RELOAD_S": interval, "PATH": path},
            ))  # fmt: skip
        deadline = time.monotonic() + 10
        while not (folder / "tmp" / "nginx.pid").is_file():
            assert started[-1].poll() is None and time.monotonic() < deadline, "no nginx"
            time.sleep(0.05)
        return started[-1]

    yield conf, ports, start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_the_pods_guard_admits_its_tenants_and_reloads_a_changed_secret(pod, heldout_png, tmp_path):
    conf, ports, start = pod
    http, grpc = f"http://127.0.0.1:{ports.http}", f"grpc://127.0.0.1:{ports.grpc}"
    keys = {"app": secrets.token_urlsafe(24)}
    tenants = write_tenants(tmp_path / "tenants.json", keys)
    assert cli(["pod-guard", "--tenants", str(tenants), "--out", str(conf)]) == 0
    assert conf.stat().st_mode & 0o777 == 0o600  # it holds keys
    guard = start("0.2")
    pid = conf.parent / "tmp" / "nginx.pid"
    master = pid.read_text()
    png = heldout_png[0]
    for url in (http, grpc):
        assert eventually(lambda url=url: admitted(url, keys["app"], png))
        assert not admitted(url, "x" * 24, png)  # a key the file does not hold

    # The Secret changes (kubectl applies it; Kubernetes swaps the file): a new tenant.
    keys["web"] = secrets.token_urlsafe(24)
    assert cli(["pod-guard", "--tenants", str(write_tenants(tenants, keys)),
                "--out", str(conf)]) == 0  # fmt: skip
    for url in (http, grpc):
        assert eventually(lambda url=url: admitted(url, keys["web"], png)), url
    assert pid.read_text() == master  # reloaded, not restarted

    # A conf nginx refuses is not loaded, and the script says so: the last good one serves.
    good = conf.read_text()
    conf.write_text(good.replace("worker_processes 1;", "worker_processes x;"))
    said = tmp_path / "said.log"
    assert eventually(lambda: "maas guard: nginx -t refused" in said.read_text()), said.read_text()
    assert guard.poll() is None and admitted(http, keys["web"], png)
    assert pid.read_text() == master

    guard.send_signal(signal.SIGTERM)  # what the kubelet sends the container
    assert guard.wait(timeout=30) == 0
    assert not pid.exists()  # nginx stopped, not orphaned

    # SIGTERM does not wait out the script's look interval (the kubelet's grace period is 40 s).
    conf.write_text(good)
    guard = start("60")
    guard.send_signal(signal.SIGTERM)
    assert guard.wait(timeout=15) == 0 and not pid.exists()
