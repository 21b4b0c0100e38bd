"""The processes maas starts and watches (tritonserver and its Python stubs, nginx, Prometheus):
how they are tied to their launcher, stopped, found and counted. On psutil, not /proc scans.

    proc = subprocess.Popen(cmd, preexec_fn=die_with_parent, start_new_session=True)
    stop(proc)                                  # SIGTERM, SIGKILL if it hangs; its exit code
    kill_group(proc)                            # SIGKILL to its group now; its exit code
    stubs(proc.pid)                             # {"preprocess": [pid], ...}
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil

STUB = "triton_python_backend_stub"


def die_with_parent() -> None:
    """In the child before exec (Popen's preexec_fn): SIGTERM when the launcher dies, even by
    SIGKILL (Linux), so no path leaves an orphaned server, nginx or Prometheus holding the
    ports. The launcher is the thread that called Popen: maas starts them from the main thread."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def stop(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
    """`sig` to a child (if it still runs), SIGKILL if it hangs past `timeout`; its exit code."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def kill_group(proc: subprocess.Popen) -> int:
    """SIGKILL to a child's process group at once (its own: start_new_session=True); its exit
    code."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    return proc.returncode


def remove_shared_memory(prefix: str) -> None:
    """Unlink the files under /dev/shm named `prefix`...: what a process that no longer runs
    left there (a Python stub's region outlives a tritonserver that did not stop cleanly)."""
    for path in Path("/dev/shm").glob(f"{prefix}*"):
        path.unlink(missing_ok=True)


def stop_group(proc: subprocess.Popen, timeout: float) -> int:
    """stop(), then whatever is left of its process group (the Python stubs that a server which
    did not stop cleanly leaves behind, still running). Its exit code."""
    stop(proc, signal.SIGTERM, timeout)
    with contextlib.suppress(ProcessLookupError, PermissionError):  # none left
        os.killpg(proc.pid, signal.SIGKILL)  # its own group: start_new_session=True
    return proc.returncode


def running(pid: int) -> bool:
    """The process exists and has not exited (a zombie, exited and not yet reaped, has)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(pid: int, timeout: float = 45) -> bool:
    """True once `pid` no longer runs, within `timeout` seconds (looked at once at least)."""
    deadline = time.monotonic() + timeout
    while running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def children(pid: int) -> dict[int, str]:
    """The processes whose parent is `pid`, now: pid -> name."""
    try:
        kids = psutil.Process(pid).children()
    except psutil.NoSuchProcess:
        return {}
    out = {}
    for kid in kids:
        with contextlib.suppress(psutil.NoSuchProcess):
            out[kid.pid] = kid.name()
    return out


def in_group(group: int) -> list[int]:
    """Live (not zombie) processes of a process group."""
    out = []
    for proc in psutil.process_iter():
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
            if os.getpgid(proc.pid) == group and proc.status() != psutil.STATUS_ZOMBIE:
                out.append(proc.pid)
    return out


def stub_model(args: list[str]) -> str:
    """The model a stub's command line serves: from its instance name, <model>_<group>_<n>
    (Triton 2.51's ninth argument), else from <repository>/<model>/<version>/model.py (its
    second). The name first: a repository Triton reads from S3 lies in a temporary folder per
    model (/tmp/folderXXXX/1/model.py), which names no model."""
    named = re.fullmatch(r"(.+)_\d+_\d+", args[8]) if len(args) > 8 else None
    return named.group(1) if named else Path(args[1]).parts[-3]


def stubs(server_pid: int) -> dict[str, list[int]]:
    """Python-backend stub processes running under tritonserver `server_pid`: model -> pids."""
    found: dict[str, list[int]] = {}
    try:
        kids = psutil.Process(server_pid).children()
    except psutil.NoSuchProcess:
        return found
    for kid in kids:
        try:
            args = kid.cmdline()
            alive = kid.status() != psutil.STATUS_ZOMBIE
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # gone meanwhile, or not ours to read
        if alive and len(args) >= 2 and args[0].endswith(STUB):
            found.setdefault(stub_model(args), []).append(kid.pid)
    return found
