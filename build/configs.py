"""Triton model configs as data: protobuf ModelConfig messages from Triton's own schema.

Each function returns a `tritonclient.grpc.model_config_pb2.ModelConfig`; `to_pbtxt` writes it.
Nothing here hand-formats config.pbtxt text, so every config we write parses by construction.
"""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from maas import contract as C
from maas.transforms import DEFAULT_MAX_PIXELS, Preprocessing

WARMUP_IMAGE_FILE = "probe_image.bin"  # under preprocess/warmup/: length-prefixed PNG bytes


@dataclass(frozen=True)
class ServingOptions:
    """How the repository serves; defaults suit a 2-core CPU machine."""

    max_batch_size: int = 64
    default_top_k: int = 3
    max_pixels: int = DEFAULT_MAX_PIXELS
    # A short wait lets concurrent requests share one Python-backend call and one ORT run.
    queue_delay_us: int = 500
    preprocess_instances: int = 1
    classifier_instances: int = 1
    postprocess_instances: int = 1
    ort_intra_op_threads: int = 2  # this machine's cores; the batch is the classifier's parallelism

    def __post_init__(self):
        if self.max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {self.max_batch_size}")
        if not self.default_top_k >= 1:
            raise ValueError(f"default_top_k must be >= 1, got {self.default_top_k}")


def _tensor(name: str, dtype: int, dims, optional: bool = False):
    return dict(name=name, data_type=dtype, dims=list(dims), optional=optional)


def _batching(opts: ServingOptions) -> mc.ModelDynamicBatching:
    return mc.ModelDynamicBatching(max_queue_delay_microseconds=opts.queue_delay_us)


def _cpu(count: int) -> list[mc.ModelInstanceGroup]:
    return [mc.ModelInstanceGroup(kind=mc.ModelInstanceGroup.KIND_CPU, count=count)]


def _params(**values) -> dict[str, mc.ModelParameter]:
    return {k: mc.ModelParameter(string_value=str(v)) for k, v in values.items()}


def _csv(values) -> str:
    return ",".join(repr(float(v)) for v in values)


def preprocess_config(pre: Preprocessing, opts: ServingOptions) -> mc.ModelConfig:
    return mc.ModelConfig(
        name=C.PREPROCESS,
        backend="python",
        max_batch_size=opts.max_batch_size,
        input=[mc.ModelInput(**_tensor(C.IMAGE, mc.TYPE_STRING, [1]))],
        output=[
            mc.ModelOutput(name=C.PIXELS, data_type=mc.TYPE_FP32, dims=[3, pre.height, pre.width])
        ],
        dynamic_batching=_batching(opts),
        instance_group=_cpu(opts.preprocess_instances),
        # The checkpoint's normalisation, read by model.py: the one place it is written down.
        parameters=_params(mean=_csv(pre.mean), std=_csv(pre.std), max_pixels=opts.max_pixels),
        model_warmup=[
            mc.ModelWarmup(
                name="probe_image",
                batch_size=1,
                inputs={
                    C.IMAGE: mc.ModelWarmup.Input(
                        data_type=mc.TYPE_STRING, dims=[1], input_data_file=WARMUP_IMAGE_FILE
                    )
                },
            )
        ],
    )


def _classifier_io(pre: Preprocessing, num_classes: int):
    return dict(
        input=[
            mc.ModelInput(name=C.PIXELS, data_type=mc.TYPE_FP32, dims=[3, pre.height, pre.width])
        ],
        output=[mc.ModelOutput(name=C.LOGITS, data_type=mc.TYPE_FP32, dims=[num_classes])],
    )


def _classifier_warmup(pre: Preprocessing, opts: ServingOptions) -> list[mc.ModelWarmup]:
    # Batch 1 and the largest batch: ONNX Runtime allocates per shape on first use.
    return [
        mc.ModelWarmup(
            name=f"zeros_batch_{n}",
            batch_size=n,
            inputs={
                C.PIXELS: mc.ModelWarmup.Input(
                    data_type=mc.TYPE_FP32, dims=[3, pre.height, pre.width], zero_data=True
                )
            },
        )
        for n in sorted({1, opts.max_batch_size})
    ]


def classifier_config(
    pre: Preprocessing, num_classes: int, opts: ServingOptions, model_file: str = "model.onnx"
) -> mc.ModelConfig:
    """The classifier as a Python-backend model running ONNX Runtime (any Triton, CPU only)."""
    return mc.ModelConfig(
        name=C.CLASSIFIER,
        backend="python",
        max_batch_size=opts.max_batch_size,
        **_classifier_io(pre, num_classes),
        dynamic_batching=_batching(opts),
        instance_group=_cpu(opts.classifier_instances),
        parameters=_params(model_file=model_file, intra_op_threads=opts.ort_intra_op_threads),
        model_warmup=_classifier_warmup(pre, opts),
    )


def classifier_onnxruntime_config(
    pre: Preprocessing, num_classes: int, opts: ServingOptions
) -> mc.ModelConfig:
    """The same model on Triton's onnxruntime backend (full Triton containers).

    Select it with `tritonserver --model-config-name=onnxruntime`; models without a
    configs/onnxruntime.pbtxt keep their config.pbtxt.
    """
    return mc.ModelConfig(
        name=C.CLASSIFIER,
        platform="onnxruntime_onnx",
        max_batch_size=opts.max_batch_size,
        **_classifier_io(pre, num_classes),
        dynamic_batching=_batching(opts),
        instance_group=_cpu(opts.classifier_instances),
        parameters=_params(intra_op_thread_count=opts.ort_intra_op_threads),
        model_warmup=_classifier_warmup(pre, opts),
    )


def postprocess_config(num_classes: int, opts: ServingOptions) -> mc.ModelConfig:
    return mc.ModelConfig(
        name=C.POSTPROCESS,
        backend="python",
        max_batch_size=opts.max_batch_size,
        input=[
            mc.ModelInput(**_tensor(C.LOGITS, mc.TYPE_FP32, [num_classes])),
            mc.ModelInput(**_tensor(C.TOP_K, mc.TYPE_INT32, [1], optional=True)),
        ],
        output=_topk_outputs(),
        dynamic_batching=_batching(opts),
        instance_group=_cpu(opts.postprocess_instances),
        parameters=_params(labels_file="labels.txt", default_top_k=opts.default_top_k),
        model_warmup=[
            mc.ModelWarmup(
                name="random_logits",
                batch_size=1,
                inputs={
                    C.LOGITS: mc.ModelWarmup.Input(
                        data_type=mc.TYPE_FP32, dims=[num_classes], random_data=True
                    )
                },
            )
        ],
    )


def _topk_outputs() -> list[mc.ModelOutput]:
    return [
        mc.ModelOutput(name=C.LABELS, data_type=mc.TYPE_STRING, dims=[-1]),
        mc.ModelOutput(name=C.SCORES, data_type=mc.TYPE_FP32, dims=[-1]),
        mc.ModelOutput(name=C.CLASS_IDS, data_type=mc.TYPE_INT64, dims=[-1]),
    ]


def ensemble_config(opts: ServingOptions) -> mc.ModelConfig:
    step = mc.ModelEnsembling.Step
    return mc.ModelConfig(
        name=C.ENSEMBLE,
        platform="ensemble",
        max_batch_size=opts.max_batch_size,
        input=[
            mc.ModelInput(**_tensor(C.IMAGE, mc.TYPE_STRING, [1])),
            mc.ModelInput(**_tensor(C.TOP_K, mc.TYPE_INT32, [1], optional=True)),
        ],
        output=_topk_outputs(),
        ensemble_scheduling=mc.ModelEnsembling(
            step=[
                step(
                    model_name=C.PREPROCESS,
                    model_version=-1,
                    input_map={C.IMAGE: C.IMAGE},
                    output_map={C.PIXELS: "pixels"},
                ),
                step(
                    model_name=C.CLASSIFIER,
                    model_version=-1,
                    input_map={C.PIXELS: "pixels"},
                    output_map={C.LOGITS: "logits"},
                ),
                step(
                    model_name=C.POSTPROCESS,
                    model_version=-1,
                    input_map={C.LOGITS: "logits", C.TOP_K: C.TOP_K},
                    output_map={name: name for name in (C.LABELS, C.SCORES, C.CLASS_IDS)},
                ),
            ]
        ),
    )


def to_pbtxt(config: mc.ModelConfig) -> str:
    return text_format.MessageToString(config)


def parse_pbtxt(text: str) -> mc.ModelConfig:
    """Parse with Triton's schema; unknown fields or bad values raise ParseError."""
    return text_format.Parse(text, mc.ModelConfig())
