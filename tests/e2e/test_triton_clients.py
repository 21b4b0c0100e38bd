"""Triton's own example clients work on the served networks: the calls of the client every
Triton tutorial starts from (src/python/examples/image_client.py of triton-inference-server/
client, BSD-licensed; not copied here, its steps driven through tritonclient as it drives them)
against the classifier itself, with scaling NONE.

It reads the model's metadata and config (one input of 3 dims plus the batch, its `format`
NCHW or NHWC; one FP32 vector output), sends the image converted to RGB, resized to the input
size with Pillow's bilinear filter, as float pixel values 0..255 laid out as the format says,
and asks for the top classes through Triton's classification extension (`class_count`), which
answers "score:index:label" from the output's label file. The answers: the ensemble's top-1
and labels on every held-out image, sent 4x enlarged as the samples are."""

from __future__ import annotations

import io

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.grpc.model_config_pb2 as mc
import tritonclient.http as httpclient
from PIL import Image
from tritonclient.utils import triton_to_np_dtype

from maas.clients.client import Client
from maas.runtime import names as C


def enlarged(images: np.ndarray, factor: int = 4) -> list[bytes]:
    """Held-out digits saved 4x enlarged as PNG (the samples `make serve` writes)."""
    out = []
    for x in images:
        buf = io.BytesIO()
        Image.fromarray(x).resize((x.shape[1] * factor, x.shape[0] * factor)).save(buf, "PNG")
        out.append(buf.getvalue())
    return out


def example_client_top(url: str, protocol: str, model: str, images: list[bytes], k: int = 3):
    """What image_client.py -m MODEL -c K -s NONE does, per image: [(score, index, label)]."""
    module = grpcclient if protocol == "grpc" else httpclient
    client = module.InferenceServerClient(url)
    try:
        metadata = client.get_model_metadata(model)
        config = client.get_model_config(model)
        if protocol == "grpc":
            config = config.config
            inputs, outputs = metadata.inputs, metadata.outputs
            name, shape, datatype = inputs[0].name, list(inputs[0].shape), inputs[0].datatype
            output, output_type = outputs[0].name, outputs[0].datatype
            fmt, batching = config.input[0].format, config.max_batch_size > 0
        else:
            inputs, outputs = metadata["inputs"], metadata["outputs"]
            name, shape, datatype = inputs[0]["name"], inputs[0]["shape"], inputs[0]["datatype"]
            output, output_type = outputs[0]["name"], outputs[0]["datatype"]
            fmt = mc.ModelInput.Format.Value(config["input"][0]["format"])
            batching = config.get("max_batch_size", 0) > 0
        assert len(inputs) == 1 and len(outputs) == 1 and output_type == "FP32"
        assert fmt in (mc.ModelInput.FORMAT_NCHW, mc.ModelInput.FORMAT_NHWC), "format NONE"
        dims = shape[1:] if batching else shape
        assert len(dims) == 3
        c, h, w = dims if fmt == mc.ModelInput.FORMAT_NCHW else (dims[2], dims[0], dims[1])
        answers = []
        for data in images:
            img = Image.open(io.BytesIO(data)).convert("L" if c == 1 else "RGB")
            pixels = np.array(img.resize((w, h), Image.BILINEAR)).astype(
                triton_to_np_dtype(datatype)
            )  # scaling NONE: the values as they are
            pixels = pixels.reshape(h, w, c)
            if fmt == mc.ModelInput.FORMAT_NCHW:
                pixels = pixels.transpose(2, 0, 1)
            tensor = module.InferInput(name, [1, *pixels.shape], datatype)
            tensor.set_data_from_numpy(pixels[None])
            wanted = module.InferRequestedOutput(output, class_count=k)
            result = client.infer(model, [tensor], outputs=[wanted]).as_numpy(output)
            rows = [entry.decode().split(":") for entry in result.reshape(-1)]
            answers.append([(float(s), int(i), label) for s, i, label in rows])
        return answers
    finally:
        client.close()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_the_example_client_gets_the_ensembles_top_1_and_labels(
    classifier_server, digits, protocol
):
    images = enlarged(digits.test_x)
    url = classifier_server.grpc_url if protocol == "grpc" else classifier_server.http_url
    theirs = example_client_top(url, protocol, C.CLASSIFIER, images)
    with Client(classifier_server.url("grpc")) as client:
        ours = client.classify(images, top_k=3)
    assert [t[0][2] for t in theirs] == [o.top.label for o in ours]
    assert [[i for _, i, _ in t] for t in theirs] == [
        [p.class_id for p in o.predictions] for o in ours
    ]
    accuracy = np.mean([t[0][1] == y for t, y in zip(theirs, digits.test_y, strict=True)])
    assert accuracy > 0.9  # a trained network, fed what it expects


def test_a_users_own_network_serves_the_example_client_too(server, own_onnx):
    """The served copy of a user's ONNX takes pixel values with its format declared, and its
    output carries the user's labels."""
    red = io.BytesIO()
    Image.new("RGB", (100, 80), (230, 20, 30)).save(red, "PNG")
    [answer] = example_client_top(server.grpc_url, "grpc", "colours_model", [red.getvalue()], 4)
    assert answer[0][2] == "red" and {label for _, _, label in answer} == {
        "red", "green", "blue", "grey"
    }  # fmt: skip
