"""The pipelines maas serves, declared once (see maas/spec.py for the vocabulary).

    image_classifier   IMAGE (encoded bytes), TOP_K? -> LABELS, SCORES, CLASS_IDS
    forecaster         HISTORY (a series), HORIZON? -> FORECAST, LOWER, UPPER
    forecaster_stream  OBSERVATION per request, in a sequence -> NEXT, NEXT_LOWER/UPPER, HELD

Each function takes what the checkpoint says (sizes, labels, normalisation) and the serving
defaults, and returns the Pipeline that build, serve, clients, tests and benchmarks iterate
over. The logic each step runs lives elsewhere: pure functions in maas.transforms, called by
the adapters in model_repository/.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maas import contract as C
from maas.series import Window
from maas.spec import Pipeline, SequenceBatching, Step, Tensor, Warmup, csv
from maas.transforms import Preprocessing, encode_png


def _core_warmup(tensor: Tensor) -> tuple[Warmup, ...]:
    # Batch 1 and the largest batch: ONNX Runtime allocates per shape on first use.
    return (
        Warmup("zeros_batch_1", {tensor.name: "zero"}),
        Warmup("zeros_batch_max", {tensor.name: "zero"}, batch_size=0),
    )


def image_classifier(
    pre: Preprocessing, labels: Sequence[str], default_top_k: int = 3, name: str = C.ENSEMBLE
) -> Pipeline:
    """Ours (`image_classifier`), or a user's own under `name`, with its steps named after it."""
    models = (C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS)
    if name != C.ENSEMBLE:
        models = (f"{name}_preprocess", f"{name}_model", f"{name}_postprocess")
    image = Tensor(C.IMAGE, "BYTES", (1,))
    top_k = Tensor(C.TOP_K, "INT32", (1,), optional=True)
    pixels = Tensor(C.PIXELS, "FP32", (3, pre.height, pre.width))
    logits = Tensor(C.LOGITS, "FP32", (len(labels),))
    answers = (
        Tensor(C.LABELS, "BYTES", (-1,)),
        Tensor(C.SCORES, "FP32", (-1,)),
        Tensor(C.CLASS_IDS, "INT64", (-1,)),
    )
    grey = np.array([encode_png(np.full((pre.height, pre.width, 3), 128, np.uint8))], object)
    return Pipeline(
        name=name,
        family="image_classifier",
        inputs=(image, top_k),
        outputs=answers,
        steps=(
            Step(
                models[0],
                "python",
                inputs=(image,),
                outputs=(pixels,),
                adapter="preprocess/1/model.py",
                # The checkpoint's normalisation, read by model.py: the one place it is written.
                parameters={
                    "mean": csv(pre.mean),
                    "std": csv(pre.std),
                    "max_pixels": str(pre.max_pixels),
                },
                warmup=(Warmup("probe_image", {C.IMAGE: grey}),),
            ),
            Step(
                models[1],
                "core",
                inputs=(pixels,),
                outputs=(logits,),
                warmup=_core_warmup(pixels),
            ),
            Step(
                models[2],
                "python",
                inputs=(logits, top_k),
                outputs=answers,
                adapter="postprocess/1/model.py",
                parameters={"labels_file": "labels.txt", "default_top_k": str(default_top_k)},
                files={"labels.txt": "".join(f"{label}\n" for label in labels).encode()},
                warmup=(Warmup("random_logits", {C.LOGITS: "random"}),),
            ),
        ),
    )


def forecaster(window: Window) -> Pipeline:
    """A raw history and an optional horizon in; the forecast with its interval out."""
    history = Tensor(C.HISTORY, "FP32", (-1,))
    horizon = Tensor(C.HORIZON, "INT32", (1,), optional=True)
    scaled = Tensor(C.WINDOW, "FP32", (window.length, 1))
    loc, scale = Tensor(C.LOC, "FP32", (1,)), Tensor(C.SCALE, "FP32", (1,))
    steps = Tensor(C.SCALED_FORECAST, "FP32", (window.horizon,))
    answers = tuple(Tensor(name, "FP32", (-1,)) for name in (C.FORECAST, C.LOWER, C.UPPER))
    # A smooth seasonal curve of exactly one window: what warm-up and the probe send.
    months = np.arange(window.length, dtype=np.float32)
    curve = 350 + 0.1 * months + 3 * np.sin(2 * np.pi * months / 12)
    return Pipeline(
        name=C.FORECASTER,
        family="forecaster",
        inputs=(history, horizon),
        outputs=answers,
        steps=(
            Step(
                C.FORECASTER_PREPROCESS,
                "python",
                inputs=(history,),
                outputs=(scaled, loc, scale),
                adapter=f"{C.FORECASTER_PREPROCESS}/1/model.py",
                parameters={"length": str(window.length)},
                warmup=(Warmup("one_window", {C.HISTORY: curve}),),
            ),
            Step(
                C.FORECASTER_RNN,
                "core",
                inputs=(scaled,),
                outputs=(steps,),
                warmup=_core_warmup(scaled),
            ),
            Step(
                C.FORECASTER_POSTPROCESS,
                "python",
                inputs=(steps, loc, scale, horizon),
                outputs=answers,
                adapter=f"{C.FORECASTER_POSTPROCESS}/1/model.py",
                # The prediction interval: validation residual quantiles per step.
                parameters={"lower": csv(window.lower), "upper": csv(window.upper)},
                warmup=(
                    Warmup(
                        "random_forecast",
                        {C.SCALED_FORECAST: "random", C.LOC: "zero", C.SCALE: "zero"},
                    ),
                ),
            ),
        ),
    )


def forecaster_stream(window: Window, onnx: bytes, idle_seconds: float = 60.0) -> Pipeline:
    """One observation per request under a Triton sequence (correlation ID, START/END); the
    server keeps each sequence's last `window.length` values and answers the next-step
    forecast once it has them. Clients call the model itself: there is nothing to chain."""
    observation = Tensor(C.OBSERVATION, "FP32", (1,))
    answers = (
        *(Tensor(name, "FP32", (1,)) for name in (C.NEXT, C.NEXT_LOWER, C.NEXT_UPPER)),
        Tensor(C.HELD, "INT32", (1,)),
    )
    step = Step(
        C.FORECASTER_STREAM,
        "python",
        inputs=(observation,),
        outputs=answers,
        adapter=f"{C.FORECASTER_STREAM}/1/model.py",
        parameters={
            "length": str(window.length),
            "lower": csv(window.lower[:1]),
            "upper": csv(window.upper[:1]),
            "idle_seconds": str(idle_seconds),
        },
        files={"model.onnx": onnx},  # in its own folder: an S3 repository copies folders apart
        sequence=SequenceBatching(idle_seconds=idle_seconds),
    )
    return Pipeline(C.FORECASTER_STREAM, "forecaster", (observation,), answers, (step,))
