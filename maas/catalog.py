"""The pipelines maas serves, declared once (see maas/spec.py for the vocabulary).

    image_classifier   IMAGE (encoded bytes), TOP_K? -> LABELS, SCORES, CLASS_IDS
    forecaster         HISTORY (a series), HORIZON? -> FORECAST, LOWER, UPPER
    forecaster_stream  OBSERVATION per request, in a sequence -> NEXT, NEXT_LOWER/UPPER, HELD
    vae_encode         IMAGE -> LATENT (the VAE's code of an image: compression)
    vae_decode         LATENT -> PNG
    vae_reconstruct    IMAGE -> PNG (through both networks)
    vae_sample         SEED, COUNT -> PNG x COUNT (unbatched: drawn from the prior)
    generator          DIGIT, SEED, COUNT -> PNG x COUNT (the GAN; unbatched)

Each function takes what the checkpoint says (sizes, labels, normalisation) and the serving
defaults, and returns the Pipeline that build, serve, clients, tests and benchmarks iterate
over. What each Python step runs lives in maas.runtime: its step class (named by `adapter`) and
the pure functions it calls, which the build ships inside every step's model folder.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maas.runtime import names as C
from maas.runtime.images import DEFAULT_MAX_PIXELS, Preprocessing
from maas.runtime.png import encode_png
from maas.runtime.series import Window
from maas.spec import Pipeline, Sequences, Step, Tensor, Warmup, csv

LABELS_FILE = "labels.txt"


def _pixels(height: int, width: int) -> Tensor:
    """An image as the networks take it: RGB pixel values 0..255, NCHW (maas.runtime.images);
    each network normalises in its own graph."""
    return Tensor(C.PIXELS, "FP32", (3, height, width), format="NCHW")


def _core_warmup(*tensors: Tensor) -> tuple[Warmup, ...]:
    # Batch 1 only, so that the config loads at any max_batch_size a tool gives it (Model
    # Analyzer lowers it without touching warm-ups); the Python-backend adapter also runs its
    # largest batch at load (core_model.py), since ONNX Runtime allocates per shape.
    return (Warmup("zeros_batch_1", {t.name: "zero" for t in tensors}),)


def image_classifier(
    pre: Preprocessing,
    labels: Sequence[str],
    default_top_k: int = 3,
    name: str = C.ENSEMBLE,
    outputs: str = "logits",
) -> Pipeline:
    """Ours (`image_classifier`), or a user's own under `name`, with its steps named after it.
    `outputs`: what the network gives, "logits" or "probabilities" (scored as they are)."""
    models = (C.PREPROCESS, C.CLASSIFIER, C.POSTPROCESS)
    if name != C.ENSEMBLE:
        models = (f"{name}_preprocess", f"{name}_model", f"{name}_postprocess")
    image = Tensor(C.IMAGE, "BYTES", (1,))
    top_k = Tensor(C.TOP_K, "INT32", (1,), optional=True)
    pixels = _pixels(pre.height, pre.width)
    logits = Tensor(C.LOGITS, "FP32", (len(labels),), labels=LABELS_FILE)
    label_lines = {LABELS_FILE: "".join(f"{label}\n" for label in labels).encode()}
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
                adapter="images.Preprocess",
                parameters={"max_pixels": str(pre.max_pixels)},
                warmup=(Warmup("probe_image", {C.IMAGE: grey}),),
            ),
            Step(
                models[1],
                "core",
                inputs=(pixels,),
                outputs=(logits,),
                files=label_lines,  # its output's labels: Triton's classification extension
                warmup=_core_warmup(pixels),
                # Two instances (one ONNX Runtime thread each) overlap one's IPC with the
                # other's run: +20-30% at concurrency 16-64 over one of two threads (maas tune).
                instances=2,
            ),
            Step(
                models[2],
                "python",
                inputs=(logits, top_k),
                outputs=answers,
                adapter="classify.Postprocess",
                parameters={
                    "labels_file": LABELS_FILE,
                    "default_top_k": str(default_top_k),
                    "outputs": outputs,
                },
                files=label_lines,
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
                adapter="series.ForecasterPreprocess",
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
                adapter="series.ForecasterPostprocess",
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


def forecaster_stream(window: Window, idle_seconds: float = 60.0) -> Pipeline:
    """One observation per request under a Triton sequence (sequence ID, START/END); the
    step keeps each sequence's last `window.length` values and answers the next-step
    forecast once it has them, from the forecaster's own network (forecaster_rnn, called
    through Triton). Clients call the model itself: there is nothing to chain."""
    observation = Tensor(C.OBSERVATION, "FP32", (1,))
    answers = (
        *(Tensor(name, "FP32", (1,)) for name in (C.NEXT, C.NEXT_LOWER, C.NEXT_UPPER)),
        Tensor(C.HELD, "INT32", (1,)),
        Tensor(C.READY, "BOOL", (1,)),
    )
    step = Step(
        C.FORECASTER_STREAM,
        "python",
        inputs=(observation,),
        outputs=answers,
        adapter="stream.ForecasterStream",
        parameters={
            "length": str(window.length),
            "lower": csv(window.lower[:1]),
            "upper": csv(window.upper[:1]),
            "network": C.FORECASTER_RNN,  # the gated, versioned network: one per family
        },
        sequences=Sequences(idle_seconds=idle_seconds),
    )
    return Pipeline(C.FORECASTER_STREAM, "forecaster", (observation,), answers, (step,))


def _png_step(model: str, size: int, batched: bool) -> Step:
    """Images (0..1) to PNG files, over one adapter: batched, one PNG per batch row;
    unbatched, the COUNT images of one request."""
    count = () if batched else (-1,)
    if batched:
        warm = Warmup("black_image", {C.DECODED: "zero"})  # random FP32 bits hold NaNs
    else:
        warm = Warmup("two_images", {C.DECODED: np.zeros((2, 1, size, size), np.float32)})
    return Step(
        model,
        "python",
        inputs=(Tensor(C.DECODED, "FP32", (*count, 1, size, size)),),
        outputs=(Tensor(C.PNG, "BYTES", count or (1,)),),
        adapter="generate.Png",
        warmup=(warm,),
        batched=batched,
    )


def _seed_count(max_count: int, **probe) -> tuple[tuple[Tensor, ...], Warmup]:
    """SEED and COUNT, and the warm-up (also the launcher's probe) that sends them."""
    tensors = (Tensor(C.SEED, "INT64", (1,)), Tensor(C.COUNT, "INT32", (1,)))
    values = {C.SEED: np.array([0], np.int64), C.COUNT: np.array([min(2, max_count)], np.int32)}
    return tensors, Warmup("seed_0", {**values, **probe})


def vae(latent: int, size: int = 32, max_count: int = 64) -> tuple[Pipeline, ...]:
    """The VAE's four pipelines over two core models (vae_encoder, vae_decoder); a Python step
    used by two pipelines is one Step, declared once. `max_count`: the most images one
    vae_sample request may ask for (the decoder's max batch)."""
    image = Tensor(C.IMAGE, "BYTES", (1,))
    pixels = _pixels(size, size)
    code = Tensor(C.LATENT, "FP32", (latent,))
    decoded = Tensor(C.DECODED, "FP32", (1, size, size))
    grey = np.array([encode_png(np.full((size, size, 3), 128, np.uint8))], object)
    pre = Step(
        C.VAE_PREPROCESS,
        "python",
        inputs=(image,),
        outputs=(pixels,),
        adapter="images.Preprocess",  # the classifier's
        parameters={"max_pixels": str(DEFAULT_MAX_PIXELS)},
        warmup=(Warmup("probe_image", {C.IMAGE: grey}),),
    )
    encoder = Step(C.VAE_ENCODER, "core", (pixels,), (code,), warmup=_core_warmup(pixels))
    decoder = Step(C.VAE_DECODER, "core", (code,), (decoded,), warmup=_core_warmup(code))
    png = _png_step(C.VAE_PNG, size, batched=True)
    sample_png = _png_step(C.VAE_SAMPLE_PNG, size, batched=False)
    seed_count, probe = _seed_count(max_count)
    noise = Step(
        C.VAE_NOISE,
        "python",
        inputs=seed_count,
        outputs=(Tensor(C.LATENT, "FP32", (-1, latent)),),
        adapter="generate.Noise",
        parameters={"max_count": str(max_count), "classes": "0"},
        warmup=(probe,),
        batched=False,
    )
    one_png = png.outputs
    return (
        Pipeline(C.VAE_ENCODE, "vae", (image,), (code,), (pre, encoder)),
        Pipeline(C.VAE_DECODE, "vae", (code,), one_png, (decoder, png)),
        Pipeline(C.VAE_RECONSTRUCT, "vae", (image,), one_png, (pre, encoder, decoder, png)),
        Pipeline(
            C.VAE_SAMPLE,
            "vae",
            seed_count,
            sample_png.outputs,
            (noise, decoder, sample_png),
            batched=False,
        ),
    )


def gan(noise: int, classes: int = 10, size: int = 32, max_count: int = 64) -> Pipeline:
    """(DIGIT, SEED, COUNT) -> COUNT PNGs of that digit; the same seed, the same images."""
    digit = Tensor(C.DIGIT, "INT32", (1,))
    seed_count, probe = _seed_count(max_count, **{C.DIGIT: np.array([3], np.int32)})
    drawn_from = (Tensor(C.NOISE, "FP32", (noise,)), Tensor(C.CONDITION, "FP32", (classes,)))
    png = _png_step(C.GAN_PNG, size, batched=False)
    steps = (
        Step(
            C.GAN_NOISE,
            "python",
            inputs=(digit, *seed_count),
            outputs=tuple(Tensor(t.name, t.dtype, (-1, *t.dims)) for t in drawn_from),
            adapter="generate.Noise",
            parameters={"max_count": str(max_count), "classes": str(classes)},
            warmup=(probe,),
            batched=False,
        ),
        Step(
            C.GAN_GENERATOR,
            "core",
            inputs=drawn_from,
            outputs=(Tensor(C.DECODED, "FP32", (1, size, size)),),
            warmup=_core_warmup(*drawn_from),
        ),
        png,
    )
    return Pipeline(C.GENERATOR, "gan", (digit, *seed_count), png.outputs, steps, batched=False)
