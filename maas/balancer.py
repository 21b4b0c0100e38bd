"""The balancer in front of a fleet: nginx (the Debian package, run as our child with a
generated config), HTTP and gRPC (`grpc_pass`) upstreams over the replicas with passive health
checks, and the guard (guard.js, nginx's njs module) that refuses the HTTP inference requests
tritonserver's own HTTP front end cannot survive.

    lb = Balancer(http=8000, grpc=8001)
    with Nginx([server.ports for server in servers], lb) as nginx:
        ...  # lb.url("http"), lb.url("grpc"); nginx.reload() after a replica came back
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from maas.access import TLS, Ports
from maas.contract import CLIENT_HEADER, GRPC_HEADER_PREFIX, SEQUENCE_HEADER, TENANT_HEADER
from maas.errors import ServerError
from maas.files import atomic_write
from maas.processes import die_with_parent
from maas.processes import stop as stop_process
from maas.tenants import MAP_BUCKET, Tenants

NGINX_INSTALL = "sudo apt-get update && sudo apt-get install -y nginx-light libnginx-mod-http-js"
GUARD = Path(__file__).with_name("guard.js")
TEMP_KINDS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")  # nginx's <kind>_temp_path
# Where Debian's libnginx-mod-http-js and nginx.org's nginx-module-njs put the njs module.
JS_MODULES = ("/usr/lib/nginx/modules/ngx_http_js_module.so",
              "/usr/share/nginx/modules/ngx_http_js_module.so",
              "/etc/nginx/modules/ngx_http_js_module.so")  # fmt: skip


@dataclass(frozen=True)
class Balancer:
    host: str = "127.0.0.1"
    http: int = 8000
    grpc: int = 8001
    max_body: str = "64m"  # nginx refuses larger requests with 413 before a replica sees them
    fail_timeout_s: int = 2  # a replica that failed a connection is skipped this long
    timeout_s: int = 60  # per request, connect to answer
    # Inference requests in flight per replica and priority class; the next is refused at
    # once (503, gRPC UNAVAILABLE: "overloaded, retry later"). The rule: about a replica's
    # capacity times the latency an admitted request may take (the generator at COUNT 8: a
    # few hundred requests/s x ~0.1 s), and all classes together no more than a first step's
    # own bound (ServingOptions.max_queue_size, 64), which stalls Triton 2.51's batcher when
    # reached. Measured against 64 and 16 in benchmarks/admission.py (docs/operate.md). The
    # total is this times the replicas nginx was given: while one is down, the others share
    # it. 0: no bound at the door.
    inflight_per_replica: int = 32
    tls: TLS | None = None  # HTTPS and gRPC over TLS here; nginx to the replicas: loopback
    # Who may call inference, at what rate and priority (maas.tenants); None: whoever the
    # replicas let in (their own client key, if any, which the client then sends).
    tenants: Tenants | None = None
    # With tenants: the replicas' own client key, which nginx sends in place of the tenant's.
    replica_key: str | None = field(default=None, repr=False)

    def url(self, scheme: str) -> str:
        """http://, https:// (TLS here) or grpc:// (TLS or not: the client's say)."""
        if scheme == "grpc":
            return f"grpc://{self.host}:{self.grpc}"
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.http}"


def find_nginx() -> str | None:
    return shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx") if os.access(p, os.X_OK)), None
    )


def find_js_module() -> str | None:
    return next((p for p in JS_MODULES if os.path.isfile(p)), None)


def has_nginx() -> bool:
    """nginx and its njs module are both here (what the fleet and its tests need)."""
    return find_nginx() is not None and find_js_module() is not None


def require_nginx() -> tuple[str, str]:
    """nginx and its njs module (binary, module path), or ServerError naming the install."""
    binary, js_module = find_nginx(), find_js_module()
    if binary is None or js_module is None:
        missing = "nginx" if binary is None else "nginx's njs module (for the guard)"
        raise ServerError(f"{missing} is not installed; install it with: {NGINX_INSTALL}")
    return binary, js_module


TEMPLATE = Path(__file__).with_name("nginx.conf.j2")
POD = {  # the pod's guard (deploy/k8s/triton.yaml): tritonserver's ports in the same pod
    "js_module": "modules/ngx_http_js_module.so",  # nginx.org's image has it there
    "scratch": Path("/tmp"),  # an emptyDir: the image's root is read-only
    "guard_dir": Path("/etc/nginx/maas"),  # guard.js (ConfigMap) and nginx.conf (Secret)
    "http_listen": "8080",
    "grpc_listen": "8081",
    "triton_http": 8000,
    "triton_grpc": 8001,
    "user": None,  # none: the pod runs it as its securityContext's user (UID 1000)
}


def render(replicas: list[Ports], lb: Balancer, *, js_module: str, scratch: Path,
           guard_dir: Path = GUARD.parent, pid: str | None = None, error_log: str | None = None,
           user: str | None = None, grpc: bool = True, http_listen: str | None = None,
           grpc_listen: str | None = None, origin: str = "Generated by maas.balancer.",
           template: Path = TEMPLATE) -> str:  # fmt: skip
    """nginx.conf from the one template (nginx.conf.j2): an HTTP upstream (and, with `grpc`,
    a gRPC one) over `replicas`, round robin and by sequence; the guard on HTTP inference;
    `lb.tenants`' keys, quotas and priorities. `template`: another (a benchmark's baseline)."""
    import jinja2

    template = jinja2.Template(template.read_text(), keep_trailing_newline=True,
                               undefined=jinja2.StrictUndefined)  # fmt: skip
    header = "$http_" + SEQUENCE_HEADER.replace("-", "_")
    upstreams = [("triton_http", "http", ""), ("triton_http_sequence", "http", "$maas_sequence")]
    if grpc:
        upstreams += [("triton_grpc", "grpc", ""), ("triton_grpc_sequence", "grpc", header)]
    return template.render(
        origin=origin,
        js_module=js_module,
        user=user,
        pid=pid or f"{scratch}/nginx.pid",
        error_log=error_log or f"{scratch}/error.log",
        temp_kinds=TEMP_KINDS,
        scratch=scratch,
        max_body=lb.max_body,
        guard_dir=guard_dir,
        sequence_header=SEQUENCE_HEADER,
        grpc=grpc,
        upstreams=upstreams,
        replicas=[{"http": r.http, "grpc": r.grpc} for r in replicas],
        fail_timeout=lb.fail_timeout_s,
        timeout=lb.timeout_s,
        inflight_per_replica=lb.inflight_per_replica,
        inflight=lb.inflight_per_replica * len(replicas),
        tls=lb.tls,
        tenants=lb.tenants.tenants if lb.tenants else (),
        replica_key=lb.replica_key,
        client_header=CLIENT_HEADER,
        grpc_client_header=GRPC_HEADER_PREFIX + CLIENT_HEADER,
        tenant_header=TENANT_HEADER,
        map_bucket=MAP_BUCKET,
        http_listen=http_listen or f"{lb.host}:{lb.http}",
        grpc_listen=grpc_listen or f"{lb.host}:{lb.grpc}",
    )


def nginx_config(
    replicas: list[Ports], lb: Balancer, folder: Path, js_module: str, user: str | None = None
) -> str:
    """nginx.conf for a fleet, its scratch in `folder`; workers run as `user` (given when nginx
    starts as root)."""
    return render(
        replicas, lb, js_module=js_module, scratch=folder / "tmp", user=user,
        pid=str(folder / "nginx.pid"), error_log=str(folder / "error.log"),
        origin="Generated by maas fleet; rewritten on every `maas fleet up`.",
    )  # fmt: skip


def pod_config(tenants: Tenants | None = None,
               inflight: int = Balancer.inflight_per_replica, **here) -> str:  # fmt: skip
    """The pod's guard, one tritonserver beside it, HTTP and gRPC: with no tenants,
    deploy/k8s/guard.conf; with them (keys inside: a Secret), `maas pod-guard`'s. `here`
    replaces the pod's paths and ports (a test runs it with this machine's)."""
    pod = {**POD, **here}
    return render(
        [Ports(http=pod["triton_http"], grpc=pod["triton_grpc"], metrics=0)],
        Balancer(tenants=tenants, inflight_per_replica=inflight),
        js_module=pod["js_module"], scratch=pod["scratch"], guard_dir=pod["guard_dir"],
        user=pod["user"], error_log="stderr", http_listen=pod["http_listen"],
        grpc_listen=pod["grpc_listen"],
        origin="Rendered by maas.balancer.pod_config(); tests/unit/test_deploy.py checks it."
        if tenants is None else "Rendered by `maas pod-guard --tenants`: it holds keys (a Secret).",
    )  # fmt: skip


def answers(url: str) -> bool:
    """The balancer answers: 200 on plain HTTP; over TLS (where a client certificate may be
    required), a completed connection to its port."""
    if url.startswith("http://"):
        return http_ok(url)
    host, port = urllib.parse.urlsplit(url).netloc.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
        return True
    except OSError:
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def worker_user(folder: Path) -> str:
    """Started as root, nginx runs its workers as an unprivileged user: they write request
    bodies to folder/tmp, where a root-owned folder refused them ("Permission denied", a 500
    for a 1.4 MB request). That user: nobody, owning folder/tmp/*."""
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody")
    folder.chmod(0o711)  # its workers pass through to tmp/, nothing more
    for kind in TEMP_KINDS:
        os.chown(folder / "tmp" / kind, nobody.pw_uid, nobody.pw_gid)
    return f"nobody {grp.getgrgid(nobody.pw_gid).gr_name}"


class Nginx:
    """nginx over `replicas` as configured by `lb`, as our child: `start`/`stop` (or `with`),
    `reload` (SIGHUP: new workers with fresh peer state; the old ones finish their requests)."""

    def __init__(self, replicas: list[Ports], lb: Balancer):
        self.replicas, self.lb = replicas, lb
        self.process: subprocess.Popen | None = None
        self._tmp: tempfile.TemporaryDirectory | None = None
        self._user: str | None = None  # its workers' user, when nginx starts as root

    def start(self) -> Nginx:
        binary, _ = require_nginx()  # before anything is made: the message names the install
        self._tmp = tempfile.TemporaryDirectory(prefix="maas-nginx-")
        folder = Path(self._tmp.name)
        for kind in TEMP_KINDS:
            (folder / "tmp" / kind).mkdir(parents=True)
        self._user = worker_user(folder) if os.geteuid() == 0 else None
        conf = folder / "nginx.conf"
        refused = self._write_checked(conf, self.lb)
        if refused:
            self.stop()
            raise ServerError(f"nginx refused its generated config:\n{refused}")
        self.process = subprocess.Popen(
            [binary, "-c", str(conf), "-p", str(folder)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True,
            preexec_fn=die_with_parent,
        )  # fmt: skip
        deadline = time.monotonic() + 10
        while not answers(f"{self.lb.url('http')}/v2/health/ready"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                log = folder / "error.log"
                log = log.read_text()[-2000:] if log.is_file() else ""
                self.stop()
                raise ServerError(f"nginx did not answer on its HTTP port in 10 s: {log}")
            time.sleep(0.1)
        return self

    @property
    def config_path(self) -> Path | None:
        """nginx.conf of the running nginx (mode 0600: it may hold tenants' keys)."""
        return Path(self._tmp.name) / "nginx.conf" if self._tmp is not None else None

    def reload(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGHUP)

    def _write_checked(self, path: Path, lb: Balancer) -> str:
        """`lb`'s config written at `path` (0600) and put to `nginx -t`: what nginx said
        against it, "" if nothing."""
        binary, js_module = require_nginx()
        folder = path.parent
        # It may hold keys: 0600 from its creation, written whole (nginx's master reads it).
        text = nginx_config(self.replicas, lb, folder, js_module, self._user)
        atomic_write(path, lambda f: f.write(text.encode()))
        check = subprocess.run([binary, "-t", "-c", str(path), "-p", str(folder)],
                               capture_output=True, text=True)  # fmt: skip
        return check.stderr if check.returncode != 0 else ""

    def reconfigure(self, lb: Balancer) -> None:
        """Serve as `lb` says from now on (new tenants, say) without a restart: the config
        rewritten, checked by nginx, then reloaded (SIGHUP: connections and requests in flight
        are kept). A config nginx refuses leaves the running one as it was."""
        assert self._tmp is not None, "reconfigure a started nginx"
        new = Path(self._tmp.name) / "nginx.conf.new"
        refused = self._write_checked(new, lb)
        if refused:
            new.unlink()
            raise ServerError(f"nginx refused the new config (the old one serves):\n{refused}")
        new.replace(new.with_name("nginx.conf"))
        self.lb = lb
        self.reload()

    def stop(self) -> None:
        if self.process is not None:  # SIGQUIT: graceful, in-flight requests are finished
            stop_process(self.process, signal.SIGQUIT)
            self.process = None
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    def __enter__(self) -> Nginx:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
