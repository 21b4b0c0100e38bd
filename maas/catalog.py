"""The pipelines maas serves, declared once (see maas/spec.py for the vocabulary).

    image_classifier   IMAGE (encoded bytes), TOP_K? -> LABELS, SCORES, CLASS_IDS

Each function takes what the checkpoint says (sizes, labels, normalisation) and the serving
defaults, and returns the Pipeline that build, serve, clients, tests and benchmarks iterate
over. The logic each step runs lives elsewhere: pure functions in maas.transforms, called by
the adapters in model_repository/.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from maas import contract as C
from maas.spec import Pipeline, Step, Tensor, Warmup
from maas.transforms import Preprocessing, encode_png


def _csv(values) -> str:
    return ",".join(repr(float(v)) for v in values)


def image_classifier(pre: Preprocessing, labels: Sequence[str], default_top_k: int = 3) -> Pipeline:
    image = Tensor(C.IMAGE, "BYTES", (1,))
    top_k = Tensor(C.TOP_K, "INT32", (1,), optional=True)
    pixels = Tensor(C.PIXELS, "FP32", (3, pre.height, pre.width))
    logits = Tensor(C.LOGITS, "FP32", (len(labels),))
    answers = (
        Tensor(C.LABELS, "BYTES", (-1,)),
        Tensor(C.SCORES, "FP32", (-1,)),
        Tensor(C.CLASS_IDS, "INT64", (-1,)),
    )
    grey = encode_png(np.full((pre.height, pre.width, 3), 128, np.uint8))
    return Pipeline(
        name=C.ENSEMBLE,
        family="image_classifier",
        inputs=(image, top_k),
        outputs=answers,
        steps=(
            Step(
                C.PREPROCESS,
                "python",
                inputs=(image,),
                outputs=(pixels,),
                adapter="preprocess/1/model.py",
                # The checkpoint's normalisation, read by model.py: the one place it is written.
                parameters={
                    "mean": _csv(pre.mean),
                    "std": _csv(pre.std),
                    "max_pixels": str(pre.max_pixels),
                },
                warmup=(Warmup("probe_image", {C.IMAGE: grey}),),
            ),
            Step(
                C.CLASSIFIER,
                "core",
                inputs=(pixels,),
                outputs=(logits,),
                # Batch 1 and the largest batch: ONNX Runtime allocates per shape on first use.
                warmup=(
                    Warmup("zeros_batch_1", {C.PIXELS: "zero"}),
                    Warmup("zeros_batch_max", {C.PIXELS: "zero"}, batch_size=0),
                ),
            ),
            Step(
                C.POSTPROCESS,
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
