"""The health probes' requests are distinct each time (Triton's response cache would answer a
repeated one without running a step) and still mean the same to every step."""

import base64
import io
import runpy
from pathlib import Path

import numpy as np
from PIL import Image

from maas.probe import SALTS, salted
from maas.runtime.images import decode

K8S_PROBE = Path(__file__).resolve().parents[2] / "deploy" / "k8s" / "probe.py"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.arange(48, dtype=np.uint8).reshape(4, 4, 3)).save(buffer, "PNG")
    return buffer.getvalue()


def request() -> dict[str, np.ndarray]:
    return {
        "IMAGE": np.array([[png()]], object),
        "HISTORY": np.array([[0.0, 330.5]], np.float32),
        "SEED": np.array([0], np.int64),
        "COUNT": np.array([2], np.int32),
    }


def test_each_salt_gives_other_bytes_that_mean_the_same():
    a, b = salted(request(), 1), salted(request(), 2)
    for name in ("IMAGE", "HISTORY", "SEED"):
        assert a[name].tobytes() != b[name].tobytes() or a[name].dtype == object
        assert a[name].shape == request()[name].shape and a[name].dtype == request()[name].dtype
    assert a["IMAGE"][0, 0] != b["IMAGE"][0, 0]
    assert np.array_equal(np.asarray(decode(a["IMAGE"][0, 0])), np.asarray(decode(png())))
    np.testing.assert_allclose(a["HISTORY"], request()["HISTORY"], rtol=1e-4, atol=1e-4)
    assert a["SEED"][0] != b["SEED"][0] and 0 <= a["SEED"][0] < 2**32
    assert a["COUNT"][0] == 2  # a count keeps its meaning


def test_the_pods_probe_salts_alike():
    """deploy/k8s/probe.py (no maas in the pod) makes the same bytes as maas.probe.salted."""
    k8s = runpy.run_path(str(K8S_PROBE))
    image = {"datatype": "BYTES", "data": [base64.b64encode(png()).decode()]}
    floats = {"datatype": "FP32", "data": [0.0, 330.5]}
    seed = {"datatype": "INT64", "data": [0]}
    ours = salted(request(), 5)
    assert k8s["binary"](image, 5)[4:] == bytes(ours["IMAGE"][0, 0])
    assert k8s["binary"](floats, 5) == ours["HISTORY"].tobytes()
    assert k8s["binary"](seed, 5) == ours["SEED"].tobytes()
    assert k8s["SALTS"] == SALTS
