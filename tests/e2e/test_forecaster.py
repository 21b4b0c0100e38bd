"""The forecaster through the real server: the same numbers as offline ONNX Runtime on the same
windows, every horizon, every kind of bad input refused by name, the CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from maas.build.configs import read_config, write_config
from maas.clients.client import AsyncClient, Client
from maas.clients.errors import InvalidInput
from maas.runtime import names as C
from maas.runtime.series import forecast, scale_window
from maas.training.rnn import load_co2, split

MAAS = str(Path(sys.executable).with_name("maas"))


@pytest.fixture(scope="module")
def test_windows(forecaster):
    return split(load_co2(), forecaster.window["length"], forecaster.window["horizon"])["test"]


def offline(forecaster, onnx_path, history: np.ndarray):
    """The same history through maas.runtime.series and ONNX Runtime, without Triton."""
    scaled, loc, scale = scale_window(history, forecaster.window["length"])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    out = session.run([C.SCALED_FORECAST], {C.WINDOW: scaled[None, :, None]})[0]
    return forecast(out, np.array([loc]), np.array([scale]), forecaster.spec())


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_served_forecasts_equal_offline(server, forecaster, forecaster_onnx, test_windows, scheme):
    url = server.url(scheme)
    served = []
    with Client(url) as client:
        for history in test_windows.x[::7]:
            answer = client.forecast(history)
            want = offline(forecaster, forecaster_onnx, history)
            for got, expected in zip(
                (answer.values, answer.lower, answer.upper), want, strict=True
            ):
                np.testing.assert_allclose(got, expected[0], rtol=1e-5, atol=1e-3)
            assert all(
                lo <= v <= hi
                for v, lo, hi in zip(answer.values, answer.lower, answer.upper, strict=True)
            )
            served.append(answer.values)
    # Against the truth too: the served MAE is the GRU's held-out figure on these windows.
    mae = float(np.abs(np.array(served) - test_windows.y[::7]).mean())
    assert mae < 1.5  # ppm; seasonal-naive makes 1.69 over the whole test period


def test_horizons_in_one_dynamic_batch(server, test_windows, model_counts):
    """Twelve requests at once asking horizons 1..12: each answer has its own length."""
    history = test_windows.x[0]
    with Client(f"grpc://{server.grpc_url}") as client:
        full = client.forecast(history)

    async def run():
        async with AsyncClient(f"grpc://{server.grpc_url}") as client:
            return await asyncio.gather(*(client.forecast(history, h) for h in range(1, 13)))

    for _attempt in range(5):
        before = model_counts(C.FORECASTER_POSTPROCESS, server)
        answers = asyncio.run(run())
        for h, answer in enumerate(answers, 1):
            assert len(answer.values) == len(answer.lower) == len(answer.upper) == h
            np.testing.assert_allclose(answer.values, full.values[:h], rtol=1e-6)
        inferences, executions = (
            a - b
            for a, b in zip(model_counts(C.FORECASTER_POSTPROCESS, server), before, strict=True)
        )
        if executions < inferences:
            break
    assert executions < inferences, "the twelve requests never shared a postprocess batch"


BAD = {
    "nan": ([1.0, float("nan")] * 30, None, "HISTORY: history value 1 is nan"),
    "inf": ([float("inf")] + [1.0] * 59, None, "HISTORY: history value 0 is inf"),
    "empty": ([], None, "HISTORY: empty history: 0 values"),
    "too_short": ([1.0] * 10, None, "HISTORY: history of 10 values: at least 48 are needed"),
    "horizon_zero": ([1.0] * 60, 0, "HORIZON: horizon must be between 1 and 12, got 0"),
    "horizon_past_limit": ([1.0] * 60, 13, "HORIZON: horizon must be between 1 and 12, got 13"),
}


@pytest.mark.parametrize("case", list(BAD))
@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_bad_input_named_and_the_server_stays_up(server, test_windows, case, scheme):
    history, horizon, message = BAD[case]
    url = server.url(scheme)
    with Client(url) as client:
        with pytest.raises(InvalidInput) as err:
            client.forecast(history, horizon)
        assert message in str(err.value)
        assert err.value.status == ("400" if scheme == "http" else "StatusCode.INVALID_ARGUMENT")
        assert client.is_ready()
        assert len(client.forecast(test_windows.x[0]).values) == 12


def test_bad_series_fails_only_its_own_request_in_a_batch(server, test_windows):
    async def run():
        async with AsyncClient(f"grpc://{server.grpc_url}") as client:
            histories = [test_windows.x[i] for i in range(16)]
            histories[5] = np.full(48, np.nan)
            return await asyncio.gather(
                *(client.forecast(h) for h in histories), return_exceptions=True
            )

    results = asyncio.run(run())
    assert [i for i, r in enumerate(results) if isinstance(r, Exception)] == [5]
    assert "history value 0 is nan" in str(results[5])


def test_forecast_cli(server, forecaster, forecaster_onnx, test_windows, tmp_path):
    history = test_windows.x[3]
    path = tmp_path / "co2.csv"
    path.write_text("\n".join(f"{v:.4f}" for v in history))
    run = subprocess.run(
        [MAAS, "forecast", "--file", str(path), "--horizon", "3", "--json",
         "--url", f"grpc://{server.grpc_url}"],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    answer = json.loads(run.stdout)
    want = offline(forecaster, forecaster_onnx, np.round(history, 4))
    np.testing.assert_allclose(answer["values"], want[0][0, :3], rtol=1e-5)
    bad = subprocess.run(
        [MAAS, "forecast", "1", "2", "3", "--url", f"http://{server.http_url}"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1 and "at least 48 are needed" in bad.stderr


def clients_doc_curl() -> str:
    """The bash block under "Forecast with curl" in docs/clients.md."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "clients.md").read_text()
    section = text[text.index("Forecast with curl") :]
    return re.search(r"```bash\n(.*?)```", section, re.S).group(1)


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_readme_forecast_curl(server):
    script = clients_doc_curl().replace("localhost:8000", server.http_url)
    run = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script], capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    outputs = {o["name"]: o["data"] for o in json.loads(run.stdout)["outputs"]}
    with Client(f"http://{server.http_url}") as client:
        want = client.forecast(np.round(np.arange(48) * 0.1 + 315, 1), horizon=3)
    assert len(outputs[C.FORECAST]) == 3
    np.testing.assert_allclose(outputs[C.FORECAST], want.values, rtol=1e-5)
    np.testing.assert_allclose(outputs[C.UPPER], want.upper, rtol=1e-5)


def test_stream_keeps_a_window_per_sequence(server, test_windows):
    """One observation per request: NaN until 48 are held, then the next-step forecast of
    exactly the last 48, as the forecaster ensemble gives for the same history."""
    series = np.concatenate([test_windows.x[0], test_windows.y[0]])  # 60 real months
    with Client(f"grpc://{server.grpc_url}") as client:
        steps = [
            client.observe(7, v, start=i == 0, end=i == len(series) - 1)
            for i, v in enumerate(series)
        ]
        assert [s.held for s in steps] == [min(i + 1, 48) for i in range(60)]
        assert all(np.isnan(s.next) for s in steps[:47])
        for i in (47, 53, 59):
            want = client.forecast(series[i - 47 : i + 1], horizon=1)
            assert steps[i].next == pytest.approx(want.values[0], rel=1e-5)
            assert steps[i].lower == pytest.approx(want.lower[0], rel=1e-5)
            assert steps[i].upper == pytest.approx(want.upper[0], rel=1e-5)
        # END freed it: the same ID without START is a new sequence Triton refuses.
        with pytest.raises(InvalidInput, match="START"):
            client.observe(7, 1.0)


def test_many_sequences_at_once_keep_their_own_state(server, test_windows):
    """Sixteen interleaved sequences, each a different stretch of the series, batched
    together by the sequence batcher: each last answer is its own series' forecast."""
    histories = [test_windows.x[i] for i in range(0, 64, 4)]

    async def stream(client, sequence, history):
        last = None
        for i, v in enumerate(history):
            last = await client.observe(sequence, v, start=i == 0, end=i == len(history) - 1)
        return last

    async def run():
        async with AsyncClient(f"grpc://{server.grpc_url}") as client:
            return await asyncio.gather(
                *(stream(client, 100 + n, h) for n, h in enumerate(histories))
            )

    finals = asyncio.run(run())
    with Client(f"grpc://{server.grpc_url}") as client:
        for history, final in zip(histories, finals, strict=True):
            assert final.held == 48
            assert final.next == pytest.approx(client.forecast(history, 1).values[0], rel=1e-5)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_stream_bad_input(server, scheme):
    url = server.url(scheme)
    with Client(url) as client:
        with pytest.raises(InvalidInput, match="START"):  # a sequence Triton never saw start
            client.observe(424242, 1.0)
        client.observe(31, 1.0, start=True)
        with pytest.raises(InvalidInput, match="OBSERVATION: nan in sequence 31"):
            client.observe(31, float("nan"))
        assert client.observe(31, 2.0, end=True).held == 2  # the NaN was not kept
        assert client.is_ready()


def test_idle_and_evicted_sequences_are_told_to_start_again(
    repository, tmp_path, test_windows, triton
):
    """The stream alone, holding 3 sequences at most with a 1 s idle limit, over both
    protocols: a sequence silent past the limit is freed, a fourth START evicts the least
    recently used, each told to START again, and START begins a fresh window at once."""
    repo = tmp_path / "repo"
    for model in (C.FORECASTER_STREAM, C.FORECASTER_RNN):
        shutil.copytree(repository / model, repo / model)
    path = repo / C.FORECASTER_STREAM / "config.pbtxt"
    config = read_config(path)
    config.parameters[C.IDLE_SECONDS].string_value = "1"
    config.parameters[C.MAX_SEQUENCES].string_value = "3"
    write_config(path, config)
    values = test_windows.x[0]
    # IDs of each protocol's own, both left silent through one wait; then the second
    # protocol's STARTs evict what the first one's left held.
    with triton(repo) as server, contextlib.ExitStack() as stack:
        clients = {
            (first, scheme): stack.enter_context(
                Client(server.url(scheme), model=C.FORECASTER_STREAM)
            )
            for first, scheme in ((9, "http"), (19, "grpc"))
        }
        for (first, _), client in clients.items():
            for i, value in enumerate(values[:5]):
                assert client.observe(first, value, start=i == 0).held == i + 1
        time.sleep(2.5)
        for (first, scheme), client in clients.items():
            a, b, c, d = (f"{scheme}-{name}" for name in "abcd")
            with pytest.raises(InvalidInput, match=rf"sequence {first} holds nothing.*START"):
                client.observe(first, 1.0)
            for sequence in (a, b, c):
                client.observe(sequence, values[0], start=True)
            assert client.observe(a, values[1]).held == 2  # b is now the least recent
            assert client.observe(d, values[0], start=True).held == 1  # admitted at once
            with pytest.raises(InvalidInput, match=rf"sequence {b} was evicted.*START again"):
                client.observe(b, values[1])
            assert [client.observe(s, values[2]).held for s in (a, c, d)] == [3, 2, 2]
            assert client.observe(b, 1.0, start=True).held == 1


@pytest.fixture(scope="module")
def stream_server(repository, tmp_path_factory, triton):
    """The stream and its network alone, on a server of their own: the string IDs below once
    took a whole tritonserver down."""
    repo = tmp_path_factory.mktemp("stream") / "repo"
    for model in (C.FORECASTER_STREAM, C.FORECASTER_RNN):
        shutil.copytree(repository / model, repo / model)
    with triton(repo) as server:
        yield server


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_string_sequence_ids_are_sequences_of_their_own(stream_server, scheme):
    """Triton 2.51 wrote a string ID into a UINT64 CORRID as length + bytes: "abc" became
    another number, and 29 or 64 characters overflowed the heap and killed the server. The
    stream reads the ID from the request instead: each string is a sequence with its own
    window, beside an integer with the same digits, and the server lives on."""
    ids = ["abc", "abcd", "x" * 29, "y" * 64, "7", 7]
    with Client(stream_server.url(scheme), model=C.FORECASTER_STREAM) as client:
        for n, sequence in enumerate(ids):  # all open at once, each n + 1 values long
            for i in range(n + 1):
                step = client.observe(sequence, 300.0 + i, start=i == 0)
            assert step.held == n + 1, sequence
        for n, sequence in enumerate(ids):
            assert client.observe(sequence, 1.0, end=True).held == n + 2, sequence
        assert client.is_ready()
        # A refused last value still ends its sequence: the step frees it on END.
        client.observe("ends", 1.0, start=True)
        with pytest.raises(InvalidInput, match="OBSERVATION: nan in sequence ends"):
            client.observe("ends", float("nan"), end=True)
        with pytest.raises(InvalidInput, match="START"):
            client.observe("ends", 1.0)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_abandoned_sequences_do_not_block_new_ones(stream_server, scheme):
    """With Triton's sequence batcher, 64 STARTs that never ended made every new START wait
    up to a minute. 200 abandoned sequences later, a new one is answered at once, and so is
    every abandoned one's next step (4,096 are held)."""

    async def run():
        async with AsyncClient(stream_server.url(scheme), model=C.FORECASTER_STREAM) as client:
            ids = [f"abandoned-{scheme}-{n}" for n in range(200)]
            await asyncio.gather(*(client.observe(s, 1.0, start=True) for s in ids))
            new = await asyncio.wait_for(client.observe(f"new-{scheme}", 1.0, start=True), 10)
            again = await asyncio.gather(*(client.observe(s, 2.0) for s in ids))
            return new, again

    new, again = asyncio.run(run())
    assert new.held == 1 and [step.held for step in again] == [2] * 200


def strict_json(text: str):
    """json.loads as JavaScript's JSON.parse reads: a bare NaN or Infinity is an error."""

    def refuse(constant):
        raise ValueError(f"not JSON: {constant}")

    return json.loads(text, parse_constant=refuse)


def test_stream_answers_over_http_are_strict_json(stream_server):
    """Before a whole window the stream says READY false and NEXT 0, not a bare NaN."""
    import urllib.request

    url = f"http://{stream_server.http_url}/v2/models/{C.FORECASTER_STREAM}/infer"
    for i in range(49):
        parameters = {"sequence_id": "json", "sequence_start": i == 0, "sequence_end": i == 48}
        body = {
            "parameters": parameters,
            "inputs": [
                {"name": C.OBSERVATION, "shape": [1, 1], "datatype": "FP32", "data": [330.0 + i]}
            ],
        }
        request = urllib.request.Request(url, json.dumps(body).encode(), method="POST")
        with urllib.request.urlopen(request, timeout=30) as answer:
            outputs = {o["name"]: o["data"] for o in strict_json(answer.read())["outputs"]}
        assert outputs[C.HELD] == [min(i + 1, 48)]
        assert outputs[C.READY] == [i >= 47]
        if i < 47:
            assert outputs[C.NEXT] == outputs[C.NEXT_LOWER] == outputs[C.NEXT_UPPER] == [0.0]
        else:
            assert outputs[C.NEXT_LOWER][0] < outputs[C.NEXT][0] < outputs[C.NEXT_UPPER][0]


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_finite_inputs_whose_forecast_overflows_are_refused(server, stream_server, scheme):
    """Values near float32's limit are finite, but their forecast is not: the request is
    refused naming its input, and the next one is answered."""
    huge = [3.4e38] * 47 + [-3.4e38]
    with Client(server.url(scheme)) as client:
        with pytest.raises(InvalidInput, match=r"HISTORY: its forecast is beyond float32's range"):
            client.forecast(huge)
        assert np.isfinite(client.forecast([330.0 + i for i in range(48)]).values).all()
    # One dip, then 47 values at the limit: the next value's upper bound overflows.
    dip = [-3.4e38] + [3.4e38] * 47
    with Client(stream_server.url(scheme), model=C.FORECASTER_STREAM) as client:
        for i, value in enumerate(dip[:-1]):
            client.observe(f"huge-{scheme}", value, start=i == 0)
        with pytest.raises(InvalidInput, match=r"OBSERVATION: its forecast is beyond float32's"):
            client.observe(f"huge-{scheme}", dip[-1])
        step = client.observe(f"fine-{scheme}", 1.0, start=True, end=True)
        assert step.held == 1 and np.isnan(step.next)
