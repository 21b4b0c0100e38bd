"""Each served pipeline's request and answer as tensors: the arrays a request carries (batch
axis first) and the typed answers made from a response's arrays. Pure: no server, no network,
tested without Triton; maas.clients.client sends them.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from maas.runtime import names as C


@dataclass(frozen=True)
class Prediction:
    label: str
    score: float
    class_id: int


@dataclass(frozen=True)
class Classification:
    predictions: tuple[Prediction, ...]  # best first

    @property
    def top(self) -> Prediction:
        return self.predictions[0]


@dataclass(frozen=True)
class Forecast:
    values: tuple[float, ...]  # the next `horizon` steps, in the series' units
    lower: tuple[float, ...]  # the prediction interval (90% by default), per step
    upper: tuple[float, ...]


def series_request(history: Sequence[float], horizon: int | None) -> dict[str, np.ndarray]:
    """The forecaster's inputs for one series (oldest value first)."""
    request = {C.HISTORY: np.asarray(history, dtype=np.float32).reshape(1, -1)}
    if horizon is not None:
        request[C.HORIZON] = np.array([[horizon]], dtype=np.int32)
    return request


def forecasts(outputs: Mapping[str, np.ndarray]) -> list[Forecast]:
    rows = zip(outputs[C.FORECAST], outputs[C.LOWER], outputs[C.UPPER], strict=True)
    return [Forecast(*(tuple(float(x) for x in r) for r in row)) for row in rows]


@dataclass(frozen=True)
class StreamStep:
    next: float  # the forecast of the value after the one just sent; NaN until a window
    lower: float
    upper: float
    held: int  # observations the server holds for this sequence


def new_sequence_id() -> int:
    """A stream's ID nobody else guesses: random, 1 .. 2^53 - 1 (what a JSON number holds
    exactly; the fleet's guard refuses larger integers in a JSON body)."""
    return secrets.randbelow(2**53 - 1) + 1


def observation(sequence: int | str, value: float, start: bool, end: bool) -> tuple[dict, dict]:
    """The stream's input for one value, and tritonclient's sequence arguments."""
    flags = {"sequence_id": sequence, "sequence_start": start, "sequence_end": end}
    return {C.OBSERVATION: np.array([[value]], np.float32)}, flags


def stream_step(outputs: Mapping[str, np.ndarray]) -> StreamStep:
    """The server says 0 and READY false before a whole window (strict JSON has no NaN); the
    Python answer says NaN, which no forecast is."""
    ready = bool(outputs[C.READY][0, 0])
    return StreamStep(
        *(float(outputs[n][0, 0]) if ready else float("nan")
          for n in (C.NEXT, C.NEXT_LOWER, C.NEXT_UPPER)),
        held=int(outputs[C.HELD][0, 0]),
    )  # fmt: skip


def image_request(images: Sequence[bytes], top_k: int | None) -> dict[str, np.ndarray]:
    """The image classifier's inputs for one request of encoded images."""
    request = {C.IMAGE: np.array(images, dtype=object).reshape(-1, 1)}
    if top_k is not None:
        request[C.TOP_K] = np.full((len(images), 1), top_k, dtype=np.int32)
    return request


def classifications(outputs: Mapping[str, np.ndarray]) -> list[Classification]:
    rows = zip(outputs[C.LABELS], outputs[C.SCORES], outputs[C.CLASS_IDS], strict=True)
    return [
        Classification(
            tuple(
                Prediction(lab.decode() if isinstance(lab, bytes) else str(lab), float(s), int(c))
                for lab, s, c in zip(row_l, row_s, row_c, strict=True)
            )
        )
        for row_l, row_s, row_c in rows
    ]


def latent_request(latents: np.ndarray) -> dict[str, np.ndarray]:
    return {C.LATENT: np.ascontiguousarray(latents, np.float32).reshape(len(latents), -1)}


def generation_request(seed: int, count: int, digit: int | None = None) -> dict:
    """An unbatched generator's inputs: one SEED, one COUNT (and the GAN's DIGIT)."""
    request = {C.SEED: np.array([seed], np.int64), C.COUNT: np.array([count], np.int32)}
    if digit is not None:
        request[C.DIGIT] = np.array([digit], np.int32)
    return request


def pngs(outputs: Mapping[str, np.ndarray]) -> list[bytes]:
    """The PNG files of a response (one per image), in order."""
    return [bytes(b) for b in outputs[C.PNG].reshape(-1)]


def images_only(images: Sequence[bytes]) -> dict[str, np.ndarray]:
    return {C.IMAGE: np.array(images, dtype=object).reshape(-1, 1)}


def infer_inputs(module, inputs: Mapping[str, np.ndarray]) -> list:
    """tritonclient InferInput objects (module: tritonclient.http or .grpc, or their .aio) for
    named arrays with the batch axis first; the datatype follows the array's dtype (object
    arrays of bytes: BYTES)."""
    out = []
    for name, value in inputs.items():
        value = np.asarray(value)
        tensor = module.InferInput(name, list(value.shape), np_to_triton_dtype(value.dtype))
        tensor.set_data_from_numpy(value)
        out.append(tensor)
    return out


def arrays(result) -> dict[str, np.ndarray]:
    """Every output of a tritonclient result (HTTP: JSON dict; gRPC: protobuf) by name."""
    response = result.get_response()
    outputs = response["outputs"] if isinstance(response, dict) else response.outputs
    names = [o["name"] if isinstance(o, dict) else o.name for o in outputs]
    return {name: result.as_numpy(name) for name in names}
