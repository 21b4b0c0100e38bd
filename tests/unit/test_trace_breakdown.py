"""maas.benchmarks.trace's reading of Triton's trace file, on a hand-made one: an ensemble
request with two steps, and a warm-up request before it that must not count."""

from __future__ import annotations

import json

import pytest

from maas.benchmarks.trace import breakdown, read_trace, trace_args


def _entries(trace_id, model, stamps, parent=None):
    head = {"id": trace_id, "model_name": model, "model_version": 1}
    if parent is not None:
        head["parent_id"] = parent
    return [head] + [{"id": trace_id, "timestamps": [{"name": n, "ns": ns}]} for n, ns in stamps]


def _step(trace_id, model, parent, t0):
    """A step of 100 us queue, 10 us input, 500 us infer, 40 us output, from t0 (us)."""
    us = 1000
    stamps = [("REQUEST_START", t0 * us), ("QUEUE_START", (t0 + 5) * us),
              ("COMPUTE_START", (t0 + 100) * us), ("COMPUTE_INPUT_END", (t0 + 110) * us),
              ("COMPUTE_OUTPUT_START", (t0 + 610) * us), ("COMPUTE_END", (t0 + 650) * us),
              ("REQUEST_END", (t0 + 655) * us)]  # fmt: skip
    return _entries(trace_id, model, stamps, parent)


def _request(top, t0):
    us = 1000
    stamps = [("GRPC_WAITREAD_END", t0 * us), ("REQUEST_START", (t0 + 20) * us),
              ("INFER_RESPONSE_COMPLETE", (t0 + 20 + 1400) * us),
              ("REQUEST_END", (t0 + 1430) * us), ("GRPC_SEND_END", (t0 + 1500) * us)]  # fmt: skip
    return (
        _entries(top, "pipe", stamps)
        + _step(top + 1, "pre", top, t0 + 30)
        + _step(top + 2, "post", top, t0 + 700)
    )


def test_breakdown_adds_up_and_skips_warmup(tmp_path):
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(_request(1, 0) + _request(10, 5000)))
    result = breakdown(read_trace(path), "pipe", last=1, scenario="x")
    assert result.requests == 1
    assert result.stages["pre: queue"] == pytest.approx(100)
    assert result.stages["post: infer"] == pytest.approx(500)
    assert result.stages["gRPC read -> request"] == pytest.approx(20)
    # 1400 us from request start to the response, 2 x 650 us inside the steps' compute.
    assert result.stages["ensemble scheduling"] == pytest.approx(100)
    assert result.stages["response -> gRPC sent"] == pytest.approx(80)
    assert sum(result.stages.values()) == pytest.approx(result.p50_total_us) == 1500
    with pytest.raises(ValueError, match="no traced request to other"):
        breakdown(read_trace(path), "other", last=1)


def test_trace_args_trace_every_request_to_the_file(tmp_path):
    args = trace_args(tmp_path / "t.json")
    assert args[0::2] == ("--trace-config",) * 4
    assert f"triton,file={tmp_path / 't.json'}" in args and "rate=1" in args
