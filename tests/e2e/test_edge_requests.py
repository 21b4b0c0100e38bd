"""Edge-case and hostile requests to the forecaster, the stream, the VAE's decoder and sampler
and the generator, drawn by hypothesis and sent by tritonclient over HTTP and gRPC as a
careless or hostile client would (values at float32's limits, NaN and inf, empty and long
series, wrong datatypes and sizes, out-of-range integers, any sequence ID and flags). Each
must get either an answer whose every number is finite, or a refusal that names a tensor the
client sent or can send (the stream's: the sequence); and the server keeps its process.

Every drawn request holds each pipeline's required inputs: one that sends an optional input
alone is answered by tritonserver 2.51's ensemble scheduler with "unexpected deadlock", which
names nothing (docs/security.md, known issues); the last test pins that it stays a refusal.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tritonclient.utils import InferenceServerException

from maas.build.configs import read_config
from maas.runtime import names as C

# Requests per run, from a fixed seed (derandomize): every run sends the same ones.
EXAMPLES = int(os.environ.get("MAAS_EDGE_EXAMPLES", "300"))
SENT: list[str] = []  # "answered" or "refused", one per request

EDGE_FLOATS = [0.0, -0.0, 1.0, -1.0, 330.0, 1e-45, 1e38, 3.4e38, -3.4e38, 1e30, -1e30]
NON_FINITE = [float("nan"), float("inf"), float("-inf")]
floats = st.one_of(st.sampled_from(EDGE_FLOATS + NON_FINITE), st.floats(width=32))
plain = st.floats(-1e4, 1e4, width=32)  # what a series or a code usually holds
EDGE_INTS = [-(2**31), -1, 0, 1, 9, 10, 12, 13, 64, 65, 2**31 - 1]
int32s = st.one_of(st.sampled_from(EDGE_INTS), st.integers(-(2**31), 2**31 - 1), st.integers(0, 12))
int64s = st.one_of(
    st.sampled_from([-1, 0, 2**32 - 1, 2**32, 2**63 - 1, -(2**63)]),
    st.integers(-(2**63), 2**63 - 1),
)
sequence_ids = st.one_of(
    st.integers(0, 2**63 - 1), st.text(max_size=70), st.sampled_from(["", "x" * 64, "7", 7])
)


def tensor(name: str, values, dtype) -> tuple[str, np.ndarray]:
    return name, np.asarray(values, dtype)


@st.composite
def values(draw, n: int) -> list[float]:
    """n values: plain ones with, half the time, some at the edges (float32's limits, NaN)."""
    out = draw(st.lists(plain, min_size=n, max_size=n))
    if n and draw(st.booleans()):
        for i in draw(st.lists(st.integers(0, n - 1), min_size=1, max_size=n)):
            out[i] = draw(floats)
    return out


@st.composite
def requests(draw, latent: int):
    """(pipeline, [(name, array)], sequence flags): a request with every required input."""
    pipeline = draw(st.sampled_from([C.FORECASTER, C.FORECASTER_STREAM, C.VAE_DECODE,
                                     C.VAE_SAMPLE, C.GENERATOR]))  # fmt: skip
    flags: dict = {}
    if pipeline == C.FORECASTER:
        n = draw(st.sampled_from([0, 1, 47, 48, 49, 120]))
        history = draw(values(n))
        dtype = draw(st.sampled_from([np.float32] * 4 + [np.float64, np.int32]))
        if dtype is np.int32:  # the wrong datatype, values as close as an int32 holds
            history = np.nan_to_num(np.array(history)).clip(-(2**31), 2**31 - 1)
        inputs = [tensor(C.HISTORY, [history], dtype)]
        if draw(st.booleans()):
            inputs.append(tensor(C.HORIZON, [[draw(int32s)]], np.int32))
    elif pipeline == C.FORECASTER_STREAM:
        inputs = [tensor(C.OBSERVATION, [[draw(floats)]], np.float32)]
        flags = {"sequence_id": draw(sequence_ids), "sequence_start": draw(st.booleans()),
                 "sequence_end": draw(st.booleans())}  # fmt: skip
    elif pipeline == C.VAE_DECODE:
        size = draw(st.sampled_from([latent, latent, latent - 1, latent + 1]))
        inputs = [
            tensor(C.LATENT, [draw(st.lists(floats, min_size=size, max_size=size))], np.float32)
        ]
    else:
        inputs = [
            tensor(C.SEED, [draw(int64s)], np.int64),
            tensor(C.COUNT, [draw(int32s)], np.int32),
        ]
        if pipeline == C.GENERATOR:
            inputs.append(tensor(C.DIGIT, [draw(int32s)], np.int32))
    return pipeline, inputs, flags, draw(st.sampled_from(["http", "grpc"]))


def infer(server, scheme: str, pipeline: str, inputs, flags) -> dict[str, np.ndarray]:
    module = httpclient if scheme == "http" else grpcclient
    url = server.http_url if scheme == "http" else server.grpc_url
    with module.InferenceServerClient(url) as client:
        tensors = []
        for name, array in inputs:
            t = module.InferInput(name, list(array.shape), _datatype(array))
            t.set_data_from_numpy(array)
            tensors.append(t)
        result = client.infer(pipeline, tensors, **flags)
        config = client.get_model_config(pipeline)
        names = [o["name"] if scheme == "http" else o.name for o in _outputs(config, scheme)]
        return {name: result.as_numpy(name) for name in names}


def _datatype(array: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(array.dtype)


def _outputs(config, scheme: str):
    return config["output"] if scheme == "http" else config.config.output


@pytest.fixture(scope="module")
def latent(repository) -> int:
    config = read_config(repository / C.VAE_DECODE / "config.pbtxt")
    return int(next(t for t in config.input if t.name == C.LATENT).dims[-1])


@pytest.fixture(scope="module")
def pid(server) -> int:
    return server.process.pid


@settings(
    max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)  # fmt: skip
@given(data=st.data())
def test_every_edge_request_is_answered_finite_or_refused_by_name(server, latent, pid, data):
    pipeline, inputs, flags, scheme = data.draw(requests(latent))
    try:
        outputs = infer(server, scheme, pipeline, inputs, flags)
    except InferenceServerException as e:
        message = e.message() or ""
        named = [name for name, _ in inputs]
        if flags:  # the stream's refusals about a sequence name the ID sent, or ask for one
            named += [f"sequence {flags['sequence_id']} ", "sequence_id"]
        assert any(name in message for name in named), (pipeline, message)
        assert "deadlock" not in message and "failed on this request" not in message, message
        SENT.append("refused")
    else:
        for name, array in outputs.items():
            if array.dtype.kind == "f":
                assert np.isfinite(array).all(), (pipeline, name, inputs)
        SENT.append("answered")
    assert server.process.poll() is None and server.process.pid == pid


def test_the_edge_run_sent_every_request_and_the_server_lived(server, pid):
    assert len(SENT) == EXAMPLES
    assert 0 < SENT.count("answered") < EXAMPLES  # both kinds drawn: the checks above ran
    assert server.process.poll() is None and server.process.pid == pid
    print(f"edge requests: {SENT.count('answered')} answered, {SENT.count('refused')} refused")


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_an_optional_input_alone_is_refused_and_the_server_lives(server, pid, scheme):
    """tritonserver 2.51 lets a request through with only the ensemble's optional input and
    its ensemble scheduler then refuses it without a name: pinned here as a refusal."""
    for pipeline, name, dtype in (
        (C.FORECASTER, C.HORIZON, np.int32),
        (C.ENSEMBLE, C.TOP_K, np.int32),
    ):
        with pytest.raises(InferenceServerException, match=r"deadlock|missing|expected"):
            infer(server, scheme, pipeline, [tensor(name, [[3]], dtype)], {})
    assert server.process.poll() is None and server.process.pid == pid
