"""The request path's floor: an ensemble of empty Python-backend steps, served like ours.

    from maas.benchmarks.floor import write_floor
    write_floor(Path("/tmp/floor"))      # model "floor": X (16 floats) -> 3 identity steps -> Y

Each step is benchmarks/floor/model.py (input back as output) with the configs `maas build`
writes for our Python steps (build.configs.python_config, the shipped ServingOptions: dynamic
batching, no delay, one instance), chained by the same ensemble config. What a request through
it costs is what Triton, the Python backend's IPC and the ensemble scheduler cost with no work
at all; `make bench` and `make trace` report it beside the real pipeline, so each figure says
how far above the floor it is.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from maas.build.configs import ServingOptions, ensemble_config, python_config, write_config
from maas.spec import Pipeline, Step, Tensor, Warmup

FLOOR = "floor"
STEPS = 3  # as many as the image classifier's ensemble
WIDTH = 16  # floats a request


def pipeline(steps: int = STEPS) -> Pipeline:
    names = ["X", *(f"T{i}" for i in range(1, steps)), "Y"]
    tensors = [Tensor(n, "FP32", (WIDTH,)) for n in names]
    chain = tuple(
        Step(
            f"{FLOOR}_{i}",
            "python",
            (tensors[i],),
            (tensors[i + 1],),
            adapter="floor/model.py",
            warmup=(Warmup("zeros", {names[i]: "zero"}),),
        )
        for i in range(steps)
    )
    return Pipeline(FLOOR, "benchmark", (tensors[0],), (tensors[-1],), chain)


def write_floor(root: Path, steps: int = STEPS, opts: ServingOptions | None = None) -> Path:
    """A model repository holding only the floor ensemble and its steps; returns `root`."""
    opts = opts or ServingOptions()
    floor = pipeline(steps)
    adapter = Path(__file__).with_name("floor") / "model.py"
    for step in floor.steps:
        (root / step.model / "1").mkdir(parents=True, exist_ok=True)
        shutil.copy2(adapter, root / step.model / "1" / "model.py")
        write_config(root / step.model / "config.pbtxt", python_config(step, opts))
    (root / FLOOR / "1").mkdir(parents=True, exist_ok=True)
    write_config(root / FLOOR / "config.pbtxt", ensemble_config(floor, opts))
    return root


def request() -> dict[str, np.ndarray]:
    """One request's inputs (for maas.benchmarks.load's payload targets)."""
    return {"X": np.zeros((1, WIDTH), np.float32)}
