"""A served pipeline, declared once as data: its Triton models in order, their tensors, their
warm-up data, and the ensemble that chains them.

    pipeline = catalog.image_classifier(preprocessing, labels)
    [step.model for step in pipeline.steps]   # ['preprocess', 'classifier', 'postprocess']

build/configs.py turns a Pipeline into Triton ModelConfig messages (ensemble wiring included),
build/repository.py writes them with each Python step's adapter and warm-up files, and the
launcher probes every ensemble a repository holds with the warm-up data written here. Nothing
in this module knows a family: the declarations live in maas/catalog.py.

Wiring is by name: a step's input is the ensemble tensor of the same name, which an ensemble
input or an earlier step's output provides; `Pipeline.__post_init__` checks that it exists.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from maas.runtime import names as C

# Triton datatype name -> numpy dtype of the array a client sends or receives.
DTYPES = {
    "FP32": np.float32,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
    "BYTES": np.object_,
}


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str  # a key of DTYPES
    dims: tuple[int, ...]  # without the batch axis; -1 where the size varies
    optional: bool = False
    # An image a network takes: "NCHW" or "NHWC", declared in its config (Triton's clients,
    # e.g. the image_client example, read it to lay out what they send).
    format: str = ""
    # A classifier's output: the file beside the config with one label per class, so that
    # Triton's classification extension (class_count) answers with labels.
    labels: str = ""

    def __post_init__(self):
        if self.dtype not in DTYPES:
            raise ValueError(f"tensor {self.name}: unknown datatype {self.dtype!r}")
        if self.format not in ("", "NCHW", "NHWC"):
            raise ValueError(f"tensor {self.name}: format must be NCHW or NHWC")


# A warm-up input's data: "zero", "random", or one batch row as an array (its shape gives the
# dims where the tensor's vary; BYTES as an object array of bytes).
Data = str | np.ndarray


@dataclass(frozen=True)
class Warmup:
    """One warm-up request Triton sends at load; batch_size 0 means the model's max. The
    launcher's start-up probe sends the same data through the ensemble (maas.probe)."""

    name: str
    inputs: Mapping[str, Data]
    batch_size: int = 1


@dataclass(frozen=True)
class Sequences:
    """A step that keeps each sequence's state between requests. Clients speak Triton's
    sequence protocol (a sequence ID, START and END flags), which the step reads from each
    request; it holds at most `capacity` sequences, and a START when full evicts the least
    recently used one (whose next request is told to START again), so a new sequence is
    always admitted at once. Batched dynamically, not by Triton's sequence batcher: that one
    keeps a slot per sequence until END or its idle limit and holds a new sequence silently
    in a backlog meanwhile, so 64 abandoned STARTs blocked every new one for a minute. Served
    by one instance: the state lives in that stub."""

    idle_seconds: float = 60.0  # a sequence silent this long is freed
    capacity: int = 4096  # sequences held at once (a window of floats each)

    def parameters(self) -> dict[str, str]:
        """What the step reads from its config."""
        return {C.IDLE_SECONDS: f"{self.idle_seconds:g}", C.MAX_SEQUENCES: str(self.capacity)}


@dataclass(frozen=True)
class Step:
    """One Triton model of a pipeline.

    kind "python": a Python-backend model; `adapter` names its step class in maas.runtime
    ("images.Preprocess"; the build ships the class's code with the model) or, for a test or
    benchmark, a model.py file of its own; `parameters` are what the class reads from its
    config (its PARAMETERS: the build checks that they match).
    kind "core": the network, built from ONNX into gated, numbered versions by `maas build`.
    """

    model: str
    kind: str  # "python" | "core"
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    adapter: str = ""
    parameters: Mapping[str, str] = field(default_factory=dict)
    files: Mapping[str, bytes] = field(default_factory=dict)  # written beside config.pbtxt
    instances: int = 1
    warmup: tuple[Warmup, ...] = ()
    sequences: Sequences | None = None  # per-sequence state (a stream)
    # False: no batch axis (max_batch_size 0); one request is one call, its dims the full
    # shape. For steps whose request makes its own batch (COUNT images from one SEED).
    batched: bool = True

    @property
    def config_parameters(self) -> dict[str, str]:
        """The parameters its config holds: the declaration's, and a stream's (Sequences)."""
        return {**self.parameters, **(self.sequences.parameters() if self.sequences else {})}

    def __post_init__(self):
        if self.kind not in ("python", "core"):
            raise ValueError(f"step {self.model}: kind must be 'python' or 'core'")
        if self.kind == "core" and not self.batched:
            raise ValueError(f"step {self.model}: a core model is batched (its dynamic batch)")
        if self.kind == "python" and not self.adapter:
            raise ValueError(f"step {self.model}: a Python step names its adapter")
        for name in ("parameters", "files"):
            object.__setattr__(self, name, MappingProxyType(dict(getattr(self, name))))

    def tensor(self, name: str) -> Tensor:
        for t in (*self.inputs, *self.outputs):
            if t.name == name:
                return t
        raise KeyError(f"{self.model} has no tensor {name}")


@dataclass(frozen=True)
class Pipeline:
    """What clients call (`name`, an ensemble) and the steps it chains, in order.

    An unbatched pipeline (`batched=False`) takes one request as one call, e.g. (SEED, COUNT)
    -> COUNT images: its Python steps are unbatched and make the batch that its core models,
    batched as always, receive (Triton passes an unbatched [COUNT, ...] tensor to a batched
    model as a batch of COUNT)."""

    name: str
    family: str
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    steps: tuple[Step, ...]
    batched: bool = True

    def __post_init__(self):
        for step in self.steps:
            if step.kind == "python" and step.batched != self.batched:
                raise ValueError(
                    f"pipeline {self.name}: its Python step {step.model} must be "
                    f"{'batched' if self.batched else 'unbatched'} like the pipeline"
                )
        available = {t.name for t in self.inputs}
        for step in self.steps:
            for t in step.inputs:
                if t.name not in available and not t.optional:
                    raise ValueError(
                        f"pipeline {self.name}: {step.model} reads {t.name}, which neither an "
                        f"input nor an earlier step provides"
                    )
            available |= {t.name for t in step.outputs}
        missing = [t.name for t in self.outputs if t.name not in available]
        if missing:
            raise ValueError(f"pipeline {self.name}: no step produces {', '.join(missing)}")

    @property
    def ensemble(self) -> bool:
        """False for a pipeline that is one model clients call directly (a stream)."""
        return not (len(self.steps) == 1 and self.steps[0].model == self.name)

    @property
    def pure(self) -> bool:
        """Its answer depends on the request alone (none of its steps keeps sequences), so a
        repeated request may be answered from Triton's response cache."""
        return not any(s.sequences for s in self.steps)

    @property
    def entry(self) -> Step:
        """Its first step: where a request waits first, and is admitted or refused before any
        work is spent on it."""
        return self.steps[0]

    @property
    def cores(self) -> tuple[Step, ...]:
        """The steps `maas build` versions (the VAE's reconstruct chains two)."""
        return tuple(s for s in self.steps if s.kind == "core")

    @property
    def core(self) -> Step:
        """The one core of a single-core pipeline."""
        [core] = self.cores
        return core

    def step(self, model: str) -> Step:
        for s in self.steps:
            if s.model == model:
                return s
        raise KeyError(f"pipeline {self.name} has no step {model}")


def csv(values) -> str:
    """Numbers as a config parameter (Triton parameters are strings; the steps read them back
    with maas.runtime.series.floats)."""
    return ",".join(repr(float(v)) for v in values)
