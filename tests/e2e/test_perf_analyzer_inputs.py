"""perf_analyzer's input JSON: what it decodes to is accepted by the served models."""

from __future__ import annotations

import base64
import json
import struct

import numpy as np
import tritonclient.grpc as grpcclient

from maas.benchmarks.perf_analyzer_inputs import main
from maas.clients.client import Client
from maas.runtime import names as C


def test_input_json_decodes_to_accepted_images(server, checkpoint_path, tmp_path, offline):
    ensemble, classifier = main(
        ["--checkpoint", str(checkpoint_path), "--out", str(tmp_path), "--images", "20"]
    )
    entries = json.loads(ensemble.read_text())["data"]
    images = []
    for entry in entries:
        blob = base64.b64decode(entry[C.IMAGE]["b64"])
        (length,) = struct.unpack("<I", blob[:4])  # BYTES element: 4-byte length, then bytes
        assert length == len(blob) - 4
        images.append(blob[4:])
    with Client(f"grpc://{server.grpc_url}") as client:
        results = client.classify(images)
    assert [r.top.class_id for r in results] == offline["ids"][:20, 0].tolist()

    tensors = json.loads(classifier.read_text())["data"]
    pixels = np.array([t[C.PIXELS]["content"] for t in tensors], np.float32).reshape(-1, 3, 32, 32)
    assert all(t[C.PIXELS]["shape"] == [3, 32, 32] for t in tensors)
    client = grpcclient.InferenceServerClient(server.grpc_url)
    try:
        tensor = grpcclient.InferInput(C.PIXELS, list(pixels.shape), "FP32")
        tensor.set_data_from_numpy(pixels)
        logits = client.infer(C.CLASSIFIER, [tensor]).as_numpy(C.LOGITS)
    finally:
        client.close()
    assert logits.argmax(1).tolist() == offline["ids"][: len(pixels), 0].tolist()
