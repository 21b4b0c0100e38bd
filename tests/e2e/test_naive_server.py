"""The hand-written baseline of the comparison answers like the served pipeline."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from maas.access import Ports


@pytest.fixture(scope="module")
def naive_url(checkpoint_path, onnx_path):
    port = Ports.free().http
    proc = subprocess.Popen(
        [sys.executable, "-m", "maas.benchmarks.naive_server", "--port", str(port),
         "--onnx", str(onnx_path), "--checkpoint", str(checkpoint_path)],
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/classify"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(urllib.request.Request(url, data=b"x"), timeout=2)
            except urllib.error.HTTPError:
                break  # it answers (400 for b"x")
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_naive_server_classifies_and_refuses(naive_url, heldout_png, offline):
    with urllib.request.urlopen(urllib.request.Request(naive_url, data=heldout_png[3])) as resp:
        body = json.loads(resp.read())
    assert body["class_ids"] == offline["ids"][3].tolist()
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(urllib.request.Request(naive_url, data=b"junk"))
    assert err.value.code == 400 and "not a recognised image" in err.value.read().decode()
