"""Users' own ONNX classifiers served through our steps, over HTTP and gRPC, against the source
models' own answers: a channels-first logits model (made with onnx.helper: other size, other
labels), a channels-last probabilities model exported with torch.onnx, and a Keras CNN (Keras 3
on the torch backend, `model.export(format="onnx")`): the same top-1 and the same scores."""

from __future__ import annotations

import importlib.util
import io
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import COLOURS
from PIL import Image

from maas.build.own_model import Scaling, build_own_onnx, model_input, read_model
from maas.build.repository import BuildOptions
from maas.clients.client import Client
from maas.clients.errors import InvalidInput
from maas.runtime.classify import scores
from maas.runtime.images import Preprocessing, load_images

FAST = BuildOptions(variant="onnx", speed_seconds=0.05)


def encoded(colour, size, fmt) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", size, colour).save(buf, format=fmt)
    return buf.getvalue()


COLOUR_IMAGES = {
    "red": encoded((230, 20, 30), (100, 80), "PNG"),
    "green": encoded((10, 200, 40), (33, 64), "JPEG"),
    "blue": encoded((20, 30, 240), (40, 48), "WEBP"),
    "grey": encoded((128, 128, 128), (16, 16), "BMP"),
}


def source_scores(onnx_path: Path, images: np.ndarray, scaling: Scaling | None = None):
    """The source model's own scores for uint8 RGB images at its size, fed as its user would
    (its layout, its scaling): its probabilities, or the softmax of its logits."""
    scaling = scaling or Scaling()
    model = onnx.load(str(onnx_path))
    reading = read_model(model, [str(i) for i in range(_classes(model))])
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    [rows] = session.run([reading.output], {reading.input: model_input(images, reading, scaling)})
    distribution = rows.min() >= 0 and np.allclose(rows.sum(1), 1, atol=1e-3)
    return scores(rows, probabilities=bool(distribution))


def _classes(model: onnx.ModelProto) -> int:
    return model.graph.output[0].type.tensor_type.shape.dim[1].dim_value


def assert_same_answers(url: str, model: str, pngs: list[bytes], want: np.ndarray) -> None:
    with Client(url, model=model) as client:
        results = client.classify(pngs, top_k=want.shape[1])
    top = np.array([r.top.class_id for r in results])
    np.testing.assert_array_equal(top, want.argmax(1))
    got = np.zeros_like(want)
    for row, result in zip(got, results, strict=True):
        for p in result.predictions:
            row[p.class_id] = p.score
    np.testing.assert_allclose(got, want, atol=1e-5)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_own_classifier_answers_by_colour(server, scheme):
    with Client(server.url(scheme), model="colours") as client:
        results = client.classify(list(COLOUR_IMAGES.values()), top_k=4)
        assert [r.top.label for r in results] == list(COLOUR_IMAGES)
        assert all(sorted(p.label for p in r.predictions) == sorted(COLOURS) for r in results)
        with pytest.raises(InvalidInput, match="not a recognised image"):
            client.classify([b"not an image"])


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_a_channels_first_logits_model_gives_the_source_models_scores(server, own_onnx, scheme):
    pngs = list(COLOUR_IMAGES.values())
    want = source_scores(own_onnx[0], load_images(pngs, Preprocessing(48, 40)))
    assert_same_answers(server.url(scheme), "colours", pngs, want)


class ChannelsLastSoftmax(torch.nn.Module):
    """A user's model as Keras would lay it out: NHWC values 0..1 in, probabilities out (our
    trained CNN inside, so that its answers mean something)."""

    def __init__(self, checkpoint):
        from maas.training.model import Normalized

        super().__init__()
        self.net = Normalized(checkpoint.build_model(), checkpoint.mean, checkpoint.std)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.net(images.permute(0, 3, 1, 2) * 255.0), dim=1)


KERAS_SEED_CNN = """
import os, sys
os.environ["KERAS_BACKEND"] = "torch"
import numpy as np, keras
from keras import layers
data = np.load(sys.argv[1])
keras.utils.set_random_seed(0)
model = keras.Sequential([
    keras.Input((32, 32, 3)),
    layers.Conv2D(32, 3, activation="relu"), layers.MaxPooling2D(),
    layers.Conv2D(64, 3, activation="relu"), layers.MaxPooling2D(),
    layers.Conv2D(64, 3, activation="relu"), layers.Flatten(),
    layers.Dense(64, activation="relu"), layers.Dense(10, activation="softmax"),
])
model.compile("adam", "sparse_categorical_crossentropy")
model.fit(data["x"] / 255.0, data["y"], epochs=4, batch_size=64, verbose=0)
model.export(sys.argv[2], format="onnx")
np.save(sys.argv[3], model.predict(data["test"] / 255.0, verbose=0))
"""


@pytest.fixture(scope="module")
def own_models(tmp_path_factory, checkpoint, digits) -> dict[str, tuple[Path, np.ndarray]]:
    """name -> (its ONNX, the source framework's own scores on the held-out digits)."""
    from maas.training.export import to_onnx

    folder = tmp_path_factory.mktemp("own_models")
    out = {}
    torch_model = ChannelsLastSoftmax(checkpoint).eval()
    x = digits.test_x.astype(np.float32) / 255.0
    path = folder / "torch_nhwc.onnx"
    to_onnx(torch_model, {"input_1": x[:2]}, "probabilities", {"input_1": x[:64]}, path)
    with torch.inference_mode():
        out["torch_nhwc"] = (path, torch_model(torch.from_numpy(x)).numpy())
    if importlib.util.find_spec("keras") is None:  # the dev extra installs it
        return out
    np.savez(folder / "digits.npz", x=digits.train_x, y=digits.train_y, test=digits.test_x)
    path, probs = folder / "keras_cnn.onnx", folder / "keras_probs.npy"
    subprocess.run(
        [sys.executable, "-c", KERAS_SEED_CNN, str(folder / "digits.npz"), str(path), str(probs)],
        check=True, timeout=300, env={**os.environ, "KERAS_BACKEND": "torch"},
    )  # fmt: skip
    out["keras_cnn"] = (path, np.load(probs))
    return out


@pytest.fixture(scope="module")
def own_server(tmp_path_factory, own_models, checkpoint, triton):
    labels = tmp_path_factory.mktemp("labels") / "digits.txt"
    labels.write_text("".join(f"{name}\n" for name in checkpoint.class_names))
    target = tmp_path_factory.mktemp("own") / "model_repository"
    for name, (path, _) in own_models.items():
        build_own_onnx(path, labels, target, name, build=FAST)  # no layout or output flags
    with triton(target) as server:
        yield server


@pytest.mark.parametrize("scheme", ["http", "grpc"])
@pytest.mark.parametrize("name", ["torch_nhwc", "keras_cnn"])
def test_a_channels_last_probabilities_model_gives_its_frameworks_scores(
    own_server, own_models, heldout_png, name, scheme
):
    """No flags: the layout and the probabilities are read from the model; served top-1 and
    every score equal the framework's own predictions on the held-out digits (no second
    softmax: that would give ~0.23 where the model says 1.0)."""
    if name not in own_models:
        pytest.skip("keras is not installed (pip install '.[dev]')")
    _, want = own_models[name]
    assert want.max(1).mean() > 0.9  # confident, trained models: a double softmax shows
    assert_same_answers(own_server.url(scheme), name, heldout_png, want)
