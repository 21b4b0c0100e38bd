"""Triton model configs as data: protobuf ModelConfig messages from Triton's own schema.

Each function returns a `tritonclient.grpc.model_config_pb2.ModelConfig`; `to_pbtxt` writes it.
Nothing here hand-formats config.pbtxt text, so every config we write parses by construction.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from maas.errors import ConfigError
from maas.files import atomic_write
from maas.runtime.images import DEFAULT_MAX_PIXELS
from maas.spec import DTYPES, Pipeline, Step, Tensor, Warmup
from maas.tenants import LEVELS as PRIORITY_LEVELS


@dataclass(frozen=True)
class ServingOptions:
    """How the repository serves, for every model alike; what differs per model (its instance
    count) is its declaration's (maas.catalog), which `instances` overrides by model name.
    Defaults suit a 2-core CPU machine."""

    top_k: int = 3  # the image classifiers' TOP_K when a request gives none
    max_pixels: int = DEFAULT_MAX_PIXELS  # the image steps' decode limit
    # Batching, measured on a 2-core machine with perf_analyzer and Triton's traces
    # (docs/benchmarks.md). No queue delay: an idle instance takes a request at once (a 500 us
    # delay cost 0.6 ms a step at low load), and under load the requests that queue while an
    # instance works make its next batch anyway. No preferred size: with no delay it changes
    # nothing, and a tool that lowers max_batch_size (Model Analyzer) would break it.
    max_batch_size: int = 64  # per request, and the most rows of one generator request
    queue_delay_us: int = 0
    preferred_batch_size: int = 0  # 0: none; else the dynamic batcher's preferred size
    instances: Mapping[str, int] = field(default_factory=dict)  # model -> its instance count
    # ONNX Runtime threads per instance of a network; 0: this machine's cores shared among its
    # instances (2 cores, 2 instances -> 1 each). Parallelism comes from the batch, hence one
    # inter-op thread and sequential execution: a chain of convolutions has nothing to overlap.
    intra_op_threads: int = 0
    inter_op_threads: int = 1
    execution_mode: str = "sequential"  # or "parallel"
    serve_versions: int = 1  # a network's versions Triton loads: the newest N
    # Admission control: requests waiting at a pipeline's first step beyond which Triton
    # refuses a new one at once (gRPC UNAVAILABLE, HTTP 503 "Exceeds maximum queue size"),
    # before it costs any work; 0: unbounded. One full batch of one-row requests waiting. Held
    # full, it stalls Triton 2.51's batcher: answered throughput falls far under capacity
    # (docs/operate.md, admission control; maas.build.admission).
    max_queue_size: int = 64
    # A request that waited this long in any step's queue is refused (503 / UNAVAILABLE,
    # "Request timeout expired"): admitted requests wait no longer than that at any step,
    # whichever is the slower one. 0: no limit (maas.build.admission.bound_wait).
    queue_timeout_ms: int = 0
    # Triton's response cache on every pipeline whose answer depends only on its request (all
    # ensembles; not the stream): a repeated request is answered from the server's cache
    # (`maas serve --cache-mb`) without running a step.
    response_cache: bool = True

    def count(self, step: Step) -> int:
        """The instance count a step is served with: its declaration's, unless overridden."""
        return self.instances.get(step.model, step.instances)

    def threads(self, step: Step) -> int:
        """ONNX Runtime's intra-op threads for each instance of the network `step`."""
        return self.intra_op_threads or max(1, (os.cpu_count() or 1) // self.count(step))

    def __post_init__(self):
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if not self.top_k >= 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        for name in ("max_queue_size", "queue_timeout_ms"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if any(n < 1 for n in self.instances.values()):
            raise ValueError(f"instances must be >= 1, got {dict(self.instances)}")
        object.__setattr__(self, "instances", MappingProxyType(dict(self.instances)))


PYTHON_CONFIG = "python"  # configs/python.pbtxt: a core model's Python-backend alternate
ORT_TRT_CACHE = "/tmp/maas-ort-trt-cache"  # ONNX Runtime's TensorRT engine cache, per model

# Triton's data type per name of maas.spec.DTYPES (the one table); a config calls BYTES STRING.
DATA_TYPES = {
    name: mc.DataType.Value("TYPE_STRING" if name == "BYTES" else f"TYPE_{name}") for name in DTYPES
}
NAMES = {code: name for name, code in DATA_TYPES.items()}


def numpy_dtype(data_type: int) -> type:
    """The numpy dtype of a config's data type (one of DTYPES')."""
    return DTYPES[NAMES[data_type]]


FORMATS = {"": mc.ModelInput.FORMAT_NONE, "NCHW": mc.ModelInput.FORMAT_NCHW,
           "NHWC": mc.ModelInput.FORMAT_NHWC}  # fmt: skip


def _input(t: Tensor) -> mc.ModelInput:
    return mc.ModelInput(name=t.name, data_type=DATA_TYPES[t.dtype], dims=list(t.dims),
                         optional=t.optional, format=FORMATS[t.format])  # fmt: skip


def _output(t: Tensor, step: Step | None = None) -> mc.ModelOutput:
    """An output; its label file where `step` (the model that makes it) writes that file."""
    labels = t.labels if step is not None and t.labels in step.files else ""
    return mc.ModelOutput(
        name=t.name, data_type=DATA_TYPES[t.dtype], dims=list(t.dims), label_filename=labels
    )


def _batching(opts: ServingOptions) -> mc.ModelDynamicBatching:
    preferred = [min(opts.preferred_batch_size, opts.max_batch_size)]
    return mc.ModelDynamicBatching(
        max_queue_delay_microseconds=opts.queue_delay_us,
        preferred_batch_size=preferred if opts.preferred_batch_size else [],
        **PRIORITIES,
    )


# A queue per priority class (maas.tenants): Triton takes a batch from the highest level first,
# so a tenant the front door marks interactive is not queued behind a bulk tenant's flood. The
# ensembles hand their request's priority to every step. A request naming no level (or one
# out of range) gets the lowest. Batched models and first steps only: on gan_png (unbatched,
# the generator's last step) priority levels cut the generator's throughput from 435-556 to
# 91-209 requests/s in 11 runs of 12 (docs/operate.md); its queue stays first come, first served.
PRIORITIES = {"priority_levels": PRIORITY_LEVELS, "default_priority_level": PRIORITY_LEVELS}


def _cpu(count: int) -> list[mc.ModelInstanceGroup]:
    return [mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=count)]


def _params(**values) -> dict[str, mc.ModelParameter]:
    return {k: mc.ModelParameter(string_value=str(v)) for k, v in values.items()}


def warmup_file(warmup: Warmup, tensor: str) -> str:
    """Where a bytes warm-up input is written, under the model's warmup/ folder."""
    return f"{warmup.name}_{tensor}.bin"


def _warmups(step: Step, max_batch_size: int) -> list[mc.ModelWarmup]:
    out, sizes = [], set()
    for w in step.warmup:
        batch = min(w.batch_size or max_batch_size, max_batch_size)
        if (batch, tuple(w.inputs)) in sizes:
            continue  # "the largest batch" is batch 1 when max_batch_size is 1
        sizes.add((batch, tuple(w.inputs)))
        inputs = {}
        for name, data in w.inputs.items():
            t = step.tensor(name)
            if isinstance(data, str):
                kind = {"zero_data": True} if data == "zero" else {"random_data": True}
                dims = list(t.dims)
            else:
                kind, dims = {"input_data_file": warmup_file(w, name)}, list(data.shape)
            inputs[name] = mc.ModelWarmup.Input(data_type=DATA_TYPES[t.dtype], dims=dims, **kind)
        out.append(mc.ModelWarmup(name=w.name, batch_size=batch, inputs=inputs))
    return out


def python_config(
    step: Step, opts: ServingOptions, parameters: dict[str, str] | None = None
) -> mc.ModelConfig:
    """A Python-backend step: its class reads `parameters` (default: the declaration's; the
    build adds its stamps); dynamically batched unless the step is unbatched (max_batch_size
    0: each request is one call, and warm-up batch 1). A step that keeps sequences has one
    instance, whatever the options say: its state lives in that stub."""
    max_batch = opts.max_batch_size if step.batched else 0
    parameters = step.config_parameters if parameters is None else parameters
    config = mc.ModelConfig(
        name=step.model,
        backend="python",
        max_batch_size=max_batch,
        input=[_input(t) for t in step.inputs],
        output=[_output(t) for t in step.outputs],
        instance_group=_cpu(1 if step.sequences else opts.count(step)),
        parameters=_params(**parameters),
        model_warmup=_warmups(step, max(max_batch, 1)),
    )
    if step.batched:
        config.dynamic_batching.CopyFrom(_batching(opts))
    return config


def _core_common(step: Step, opts: ServingOptions, versions: list[int]) -> dict:
    """The fields every config of a core model shares, whatever runs it."""
    return dict(
        name=step.model,
        max_batch_size=opts.max_batch_size,
        version_policy=version_policy(versions, opts.serve_versions),
        input=[_input(t) for t in step.inputs],
        output=[_output(t, step) for t in step.outputs],
        dynamic_batching=_batching(opts),
        model_warmup=_warmups(step, opts.max_batch_size),
    )


def version_policy(versions: list[int], serve: int) -> mc.ModelVersionPolicy:
    """The newest `serve` of `versions`, listed explicitly: `versions` are those of the newest
    build's runtime, so a kept version of another runtime (an ONNX one beside a plan) is never
    loaded by a config that cannot run it."""
    newest = sorted(versions)[-serve:]
    return mc.ModelVersionPolicy(specific=mc.ModelVersionPolicy.Specific(versions=newest))


def _ort_params(step: Step, opts: ServingOptions, **extra) -> dict[str, mc.ModelParameter]:
    return _params(
        intra_op_threads=opts.threads(step),
        inter_op_threads=opts.inter_op_threads,
        execution_mode=opts.execution_mode,
        **extra,
    )


def core_config(step: Step, opts: ServingOptions, versions: list[int]) -> mc.ModelConfig:
    """A core model's config.pbtxt: Triton's own onnxruntime backend, which every Triton
    container has (CPU here; the same file on a GPU Triton runs on CPU instances). Each
    version's model.onnx is the portable graph that was gated (build/portable.py); the
    backend optimises it at load, as the gate's session did."""
    return mc.ModelConfig(
        **_core_common(step, opts, versions),
        backend="onnxruntime",
        instance_group=_cpu(opts.count(step)),
        parameters=_params(
            intra_op_thread_count=opts.threads(step),
            inter_op_thread_count=opts.inter_op_threads,
            execution_mode=int(opts.execution_mode == "parallel"),
        ),
    )


def core_python_config(
    step: Step, opts: ServingOptions, versions: list[int], stamps: dict[str, str] | None = None
) -> mc.ModelConfig:
    """The alternate, configs/python.pbtxt: the same versions on the Python backend running
    ONNX Runtime (maas.runtime.onnx_core), for a tritonserver without the onnxruntime backend
    (the nvidia-pytriton wheel's), where the stubs' Python has onnxruntime: `maas serve`
    selects it there (--model-config-name=python)."""
    return mc.ModelConfig(
        **_core_common(step, opts, versions),
        backend="python",
        instance_group=_cpu(opts.count(step)),
        parameters=_ort_params(step, opts, **(stamps or {})),
    )


def core_onnxruntime_tensorrt_config(
    step: Step,
    opts: ServingOptions,
    versions: list[int],
    workspace_bytes: int = 1 << 30,
) -> mc.ModelConfig:
    """Triton's other route to TensorRT: the onnxruntime backend on a GPU with the TensorRT
    execution accelerator (FP16); ONNX Runtime falls back to CUDA for what TensorRT can't take.
    Select with `--model-config-name=onnxruntime_tensorrt` on a GPU Triton."""
    accelerator = mc.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator
    return mc.ModelConfig(
        **_core_common(step, opts, versions),
        backend="onnxruntime",
        instance_group=[mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=1)],
        optimization=mc.ModelOptimizationPolicy(
            execution_accelerators=mc.ModelOptimizationPolicy.ExecutionAccelerators(
                gpu_execution_accelerator=[
                    accelerator(
                        name="tensorrt",
                        parameters={
                            "precision_mode": "FP16",
                            "max_workspace_size_bytes": str(workspace_bytes),
                            "trt_engine_cache_enable": "1",
                            # Engines ONNX Runtime builds at load, kept across restarts; a
                            # path valid in any container (docs/build.md, Variants).
                            "trt_engine_cache_path": f"{ORT_TRT_CACHE}/{step.model}",
                        },
                    ),
                    accelerator(name="cuda"),
                ]
            )
        ),
    )


def core_tensorrt_config(
    step: Step,
    opts: ServingOptions,
    versions: list[int],
    max_batch_size: int,
    cc_model_filenames: dict[str, str],
) -> mc.ModelConfig:
    """A TensorRT engine (`platform: tensorrt_plan`); max_batch_size is the profile's max.

    A plan loads only on the TensorRT version and GPU compute capability that built it, so
    each engine file is listed under its compute capability."""
    plan_opts = dataclasses.replace(opts, max_batch_size=max_batch_size)
    return mc.ModelConfig(
        **_core_common(step, plan_opts, versions),
        platform="tensorrt_plan",
        instance_group=[
            mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_GPU, count=opts.count(step))
        ],
        cc_model_filenames=cc_model_filenames,
    )


def ensemble_config(pipeline: Pipeline, opts: ServingOptions) -> mc.ModelConfig:
    """The ensemble clients call: each step's tensors wired by name (see maas.spec)."""
    step = mc.ModelEnsembling.Step
    return mc.ModelConfig(
        name=pipeline.name,
        platform="ensemble",
        max_batch_size=opts.max_batch_size if pipeline.batched else 0,
        input=[_input(t) for t in pipeline.inputs],
        output=[_output(t) for t in pipeline.outputs],
        response_cache=mc.ModelResponseCache(enable=opts.response_cache and pipeline.pure),
        ensemble_scheduling=mc.ModelEnsembling(
            step=[
                step(
                    model_name=s.model,
                    model_version=-1,
                    input_map={t.name: t.name for t in s.inputs},
                    output_map={t.name: t.name for t in s.outputs},
                )
                for s in pipeline.steps
            ]
        ),
    )


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def check(config: mc.ModelConfig) -> list[str]:
    """What Triton refuses at load although the schema allows it (its ValidateModelConfig):
    a config that a tool edited (`maas tune`, Model Analyzer) can break these."""
    problems = []
    for size in config.dynamic_batching.preferred_batch_size:
        if size <= 0:
            problems.append(f"dynamic batching preferred size {size} must be positive")
        elif size > config.max_batch_size:
            problems.append(
                f"dynamic batching preferred size {size} must be <= max_batch_size "
                f"{config.max_batch_size}"
            )
    if config.HasField("sequence_batching") and not config.sequence_batching.control_input:
        problems.append("sequence batching must specify at least one control tensor")
    return problems


def _refuse_if_invalid(config: mc.ModelConfig, source) -> mc.ModelConfig:
    problems = check(config)
    if problems:
        raise ConfigError(f"{source}: model {config.name!r}: " + "; ".join(problems))
    return config


def parse_pbtxt(text: str, source: str = "config.pbtxt") -> mc.ModelConfig:
    """Parse with Triton's schema and check as Triton does at load; raises ConfigError naming
    `source` and the offending field."""
    try:
        config = text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as e:
        raise ConfigError(f"{source}: {e}") from None
    return _refuse_if_invalid(config, source)


def read_config(path: str | os.PathLike) -> mc.ModelConfig:
    """A config.pbtxt from disk, parsed and checked (see parse_pbtxt)."""
    return parse_pbtxt(Path(path).read_text(), str(path))


def write_config(path: str | os.PathLike, config: mc.ModelConfig) -> None:
    """Check, then write whole (Triton may be reading the folder); a config Triton would refuse
    raises ConfigError and is not written."""
    text = to_pbtxt(_refuse_if_invalid(config, path)).encode()
    atomic_write(path, lambda f: f.write(text), mode=0o644)
