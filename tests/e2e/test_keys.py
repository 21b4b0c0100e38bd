"""Triton's restricted APIs as maas sets them: model control and the other admin APIs need
the admin key; inference needs the client key only when one is given; health, metadata and
statistics stay open; the keys never show in what maas prints or in the server's log."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

from maas import contract
from maas.access import Keys
from maas.clients.client import Client, Retry
from maas.clients.errors import NotAuthorized
from maas.runtime import names as C
from maas.serve import ServerConfig

DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "k8s"

ADMIN, CLIENT = "admin-secret-0123456789", "client-secret-9876543210"


@pytest.fixture(scope="module")
def locked(classifier_repository, tmp_path_factory, triton):
    """Keys from files, with maas's key variables also set where the server is started (a
    user who exported them): neither reaches the server's or its stubs' environment."""
    folder = tmp_path_factory.mktemp("keys")
    (folder / "admin.key").write_text(ADMIN + "\n")
    (folder / "client.key").write_text(CLIENT + "\n")
    keys = Keys.from_env(folder / "admin.key", folder / "client.key")
    with pytest.MonkeyPatch.context() as env:
        env.setenv(contract.ADMIN_KEY_ENV, ADMIN)
        env.setenv(contract.CLIENT_KEY_ENV, CLIENT)
        with triton(classifier_repository, ServerConfig(keys=keys)) as server:
            yield server


def test_no_key_is_in_the_servers_or_its_stubs_environment(locked):
    import psutil

    server = psutil.Process(locked.process.pid)
    processes = [server, *server.children(recursive=True)]
    assert len(processes) >= 4  # tritonserver and the classifier's Python stubs
    for process in processes:
        environ = process.environ()
        assert not {contract.ADMIN_KEY_ENV, contract.CLIENT_KEY_ENV} & set(environ), process
        assert not any(ADMIN in v or CLIENT in v for v in environ.values()), process


def test_keys_come_from_files_and_never_show(locked, tmp_path):
    assert (locked.keys.admin, locked.keys.client) == (ADMIN, CLIENT)
    assert ADMIN not in repr(locked.keys) and CLIENT not in repr(locked.keys)
    assert not any(ADMIN in line or CLIENT in line for line in locked.log)
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(Exception, match="is empty"):
        Keys.from_env(tmp_path / "empty")  # an empty key is an error, never an open API


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_inference_needs_the_client_key(locked, heldout_png, scheme):
    no_key = Client(locked.url(scheme), key="")  # retries on: a refusal is not retried
    with no_key, pytest.raises(NotAuthorized, match="client-key"):
        no_key.classify(heldout_png[:1])
    wrong = Client(locked.url(scheme), retry=Retry(attempts=1), key="wrong")
    with wrong, pytest.raises(NotAuthorized, match="client-key"):
        wrong.classify(heldout_png[:1])
    with Client(locked.url(scheme), key=CLIENT) as client:
        [answer] = client.classify(heldout_png[:1], top_k=1)
    assert answer.predictions[0].label


def _grpc(headers: dict[str, str]) -> dict[str, str]:
    return {contract.GRPC_HEADER_PREFIX + k: v for k, v in headers.items()}


def test_model_control_needs_the_admin_key_health_and_statistics_do_not(locked):
    http = httpclient.InferenceServerClient(locked.http_url)
    grpc = grpcclient.InferenceServerClient(locked.grpc_url)
    try:
        assert http.is_server_ready() and grpc.is_server_live()  # open
        assert http.get_model_metadata(C.ENSEMBLE)["name"] == C.ENSEMBLE
        assert http.get_inference_statistics(C.CLASSIFIER)["model_stats"]
        config = json.dumps(http.get_model_config(C.POSTPROCESS))
        for call in (
            lambda h: http.load_model(C.POSTPROCESS, config=config, headers=h),
            lambda h: grpc.get_model_repository_index(headers=h and _grpc(h)),
            lambda h: http.update_log_settings({"log_verbose_level": 0}, headers=h),
        ):
            with pytest.raises(InferenceServerException, match="admin-key"):
                call(None)
            with pytest.raises(InferenceServerException, match="admin-key"):
                call({contract.ADMIN_HEADER: "wrong"})
            call({contract.ADMIN_HEADER: ADMIN})  # with the key it works
    finally:
        http.close()
        grpc.close()


def test_by_default_inference_is_open_and_model_control_closed(server, heldout_png):
    """The session's server was given no keys: a random admin key of its own."""
    with Client(server.url("http"), key="") as client:
        assert client.classify(heldout_png[:1])
    http = httpclient.InferenceServerClient(server.http_url)
    try:
        with pytest.raises(InferenceServerException, match="admin-key"):
            http.unload_model(C.POSTPROCESS)
        assert http.is_model_ready(C.POSTPROCESS)
    finally:
        http.close()


def kubernetes_args(key: str) -> list[str]:
    """deploy/k8s/triton.yaml's restricting arguments, with the key Kubernetes puts in."""
    import yaml

    docs = yaml.safe_load_all((DEPLOY / "triton.yaml").read_text())
    [pod] = [d["spec"]["template"]["spec"] for d in docs if d and d["kind"] == "Deployment"]
    [triton] = [c for c in pod["containers"] if c["name"] == "tritonserver"]
    restricting = [a for a in triton["args"] if "restricted" in a]
    assert len(restricting) == 2
    return [a.replace("$(MAAS_ADMIN_KEY)", key) for a in restricting]


def test_the_kubernetes_arguments_close_the_admin_apis(
    classifier_repository, heldout_png, monkeypatch, triton
):
    """The pod's own arguments on the real server (maas's own keys left out): the repository,
    statistics and logging refuse a caller without the Secret's key, over HTTP and gRPC;
    inference and health do not."""
    monkeypatch.setattr(Keys, "args", lambda self: [])
    config = ServerConfig(extra_args=tuple(kubernetes_args(ADMIN)))
    with triton(classifier_repository, config) as server:
        http = httpclient.InferenceServerClient(server.http_url)
        grpc = grpcclient.InferenceServerClient(server.grpc_url)
        try:
            assert http.is_server_ready() and grpc.is_server_live()
            for call in (
                lambda h: http.get_model_repository_index(headers=h),
                lambda h: grpc.get_model_repository_index(headers=h and _grpc(h)),
                lambda h: http.get_inference_statistics(C.CLASSIFIER, headers=h),
                lambda h: grpc.get_inference_statistics(C.CLASSIFIER, headers=h and _grpc(h)),
                lambda h: http.update_log_settings({"log_verbose_level": 0}, headers=h),
            ):
                with pytest.raises(InferenceServerException, match="admin-key"):
                    call(None)
                call({contract.ADMIN_HEADER: ADMIN})
        finally:
            http.close()
            grpc.close()
        with Client(server.url("grpc")) as client:
            assert client.is_ready() and client.classify(heldout_png[:1])


@pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("runuser"), reason="needs root and runuser"
)
def test_what_another_local_user_can_read(locked, tmp_path):
    """As `nobody`: the tenants' keys (the front door's) are nowhere to be read, not on a
    command line and not in nginx's config; tritonserver's own keys are on its command line
    (Triton 2.51 takes them nowhere else: docs/security.md says so). When that assertion
    fails, Triton takes them another way: move them off the command line."""
    from maas.access import Ports
    from maas.balancer import Balancer, Nginx, has_nginx
    from maas.tenants import Tenants

    def as_nobody(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["runuser", "-u", "nobody", "--", *args],
                              capture_output=True, text=True, timeout=30)  # fmt: skip

    tenant_key = "tenant-secret-" + "t" * 16
    processes = as_nobody("ps", "-eww", "-o", "args").stdout  # -ww: whole command lines
    assert ADMIN in processes and CLIENT in processes  # the known limit, pinned
    assert as_nobody("cat", f"/proc/{locked.process.pid}/environ").returncode != 0
    if not has_nginx():
        return
    ports = Ports.free()
    tenants = Tenants.parse({"tenants": {"web": {"key": tenant_key, "rate": 10}}})
    lb = Balancer(http=ports.http, grpc=ports.grpc, tenants=tenants, replica_key=CLIENT)
    with Nginx([locked.ports], lb) as nginx:
        conf = nginx.config_path
        assert tenant_key in conf.read_text()
        assert as_nobody("cat", str(conf)).returncode != 0
        assert tenant_key not in as_nobody("ps", "-eww", "-o", "args").stdout
