"""Load from tritonclient's asyncio clients for the scarce-compute benchmarks (admission,
tenants, guard): open loop (a fixed schedule, whatever the answers) and closed loop (N always
in flight), each request's outcome kept: answered (its latency), refused (Overloaded, its
latency), late (no answer in LATE_S) or failed.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from dataclasses import dataclass, field

import numpy as np

from maas.clients.errors import Overloaded, from_triton
from maas.runtime import names as C

LATE_S = 10.0


@dataclass
class Outcomes:
    asked: float  # requests/s asked for (0: closed loop)
    seconds: float = 0.0
    answered: list[float] = field(default_factory=list)  # latencies, s
    refused: list[float] = field(default_factory=list)
    late: int = 0
    failed: int = 0

    @property
    def sent(self) -> int:
        return len(self.answered) + len(self.refused) + self.late + self.failed

    def row(self, capacity: float) -> dict:
        p = lambda xs, q: float(np.percentile(xs, q) * 1e3) if xs else float("nan")  # noqa: E731
        return {
            "multiple": self.asked / capacity if self.asked else 0.0,
            "asked_per_s": self.asked,
            "sent_per_s": self.sent / self.seconds,
            "answered_per_s": len(self.answered) / self.seconds,
            "answered_p50_ms": p(self.answered, 50),
            "answered_p99_ms": p(self.answered, 99),
            "refused_share": len(self.refused) / max(self.sent, 1),
            "refused_p99_ms": p(self.refused, 99),
            "late": self.late,
            "failed": self.failed,
        }


def generator_requests(count: int):
    """Requests for the generator: digit 3, `count` images, the seed given."""

    def make(grpc, seed: int):
        inputs = []
        for name, value in ((C.DIGIT, 3), (C.SEED, seed), (C.COUNT, count)):
            dtype, kind = (np.int64, "INT64") if name == C.SEED else (np.int32, "INT32")
            t = grpc.InferInput(name, [1], kind)
            t.set_data_from_numpy(np.array([value], dtype))
            inputs.append(t)
        return inputs

    return make


def _aio(protocol: str):
    """tritonclient's asyncio module for `protocol` ("grpc" or "http")."""
    return importlib.import_module(f"tritonclient.{protocol}.aio")


async def _one(client, model, inputs, out: Outcomes, headers: dict | None = None) -> None:
    start = time.perf_counter()
    try:
        await asyncio.wait_for(client.infer(model, inputs, headers=headers), LATE_S)
        out.answered.append(time.perf_counter() - start)
    except asyncio.TimeoutError:
        out.late += 1
    except Exception as e:
        if isinstance(from_triton(e), Overloaded):
            out.refused.append(time.perf_counter() - start)
        else:
            out.failed += 1


async def open_loop(url: str, model: str, make, rate: float, seconds: float,
                    protocol: str = "grpc", headers: dict | None = None) -> Outcomes:  # fmt: skip
    tc = _aio(protocol)
    out = Outcomes(asked=rate)
    async with tc.InferenceServerClient(url) as client:
        tasks, start, n = [], time.perf_counter(), 0
        while (now := time.perf_counter() - start) < seconds:
            due = n / rate
            if due > now:
                await asyncio.sleep(due - now)
            inputs = make(tc, n)
            tasks.append(asyncio.create_task(_one(client, model, inputs, out, headers)))
            n += 1
        await asyncio.gather(*tasks)
        out.seconds = seconds
    return out


async def closed_loop(url: str, model: str, make, concurrency: int, seconds: float,
                      protocol: str = "grpc", headers: dict | None = None) -> Outcomes:  # fmt: skip
    tc = _aio(protocol)
    out = Outcomes(asked=0)
    async with tc.InferenceServerClient(url) as client:
        start, counter = time.perf_counter(), iter(range(10**9))

        async def worker():
            while time.perf_counter() - start < seconds:
                await _one(client, model, make(tc, next(counter)), out, headers)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        out.seconds = time.perf_counter() - start
    return out
