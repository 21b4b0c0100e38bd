"""One client for the served image classifier; the URL picks the protocol.

    Client("http://host:8000")   Client("grpc://host:8001")   Client("host:8001", protocol="grpc")

`classify` takes encoded image bytes or paths and returns one `Classification` per image,
splitting long lists into requests of at most `batch_size` images. `AsyncClient` is the same
over tritonclient's asyncio clients. Errors are the typed tree in maas.clients.errors.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np

from maas import contract as C
from maas.clients.errors import InvalidInput, ServerUnavailable, from_triton

DEFAULT_PORTS = {"http": 8000, "grpc": 8001}
ImageInput = bytes | str | Path


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


def parse_url(url: str, protocol: str | None = None) -> tuple[str, str]:
    """'grpc://h:p' -> ('grpc', 'h:p'); a bare 'h:p' needs `protocol` (default http)."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    scheme = parts.scheme or protocol or "http"
    if protocol and parts.scheme and protocol != parts.scheme:
        raise ValueError(f"URL {url!r} says {parts.scheme} but protocol={protocol!r}")
    if scheme not in DEFAULT_PORTS:
        raise ValueError(f"unsupported protocol {scheme!r} in {url!r}: use http:// or grpc://")
    if not parts.hostname:
        raise ValueError(f"no host in URL {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return scheme, f"{host}:{parts.port or DEFAULT_PORTS[scheme]}"


def read_images(images: Iterable[ImageInput]) -> list[bytes]:
    return [img if isinstance(img, bytes) else Path(img).read_bytes() for img in images]


def build_inputs(module, images: Sequence[bytes], top_k: int | None):
    """tritonclient InferInput objects for one request (module: tritonclient.http or .grpc)."""
    image = module.InferInput(C.IMAGE, [len(images), 1], "BYTES")
    image.set_data_from_numpy(np.array(images, dtype=object).reshape(-1, 1))
    inputs = [image]
    if top_k is not None:
        k = module.InferInput(C.TOP_K, [len(images), 1], "INT32")
        k.set_data_from_numpy(np.full((len(images), 1), top_k, dtype=np.int32))
        inputs.append(k)
    return inputs


def parse_result(result) -> list[Classification]:
    labels = result.as_numpy(C.LABELS)
    scores = result.as_numpy(C.SCORES)
    ids = result.as_numpy(C.CLASS_IDS)
    return [
        Classification(
            tuple(
                Prediction(lab.decode() if isinstance(lab, bytes) else str(lab), float(s), int(c))
                for lab, s, c in zip(row_l, row_s, row_c, strict=True)
            )
        )
        for row_l, row_s, row_c in zip(labels, scores, ids, strict=True)
    ]


def _chunks(items: list[bytes], size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Base:
    """What both clients share: the URL, the model, and requests of at most batch_size."""

    def __init__(self, url: str, protocol: str | None, model: str, batch_size: int):
        self.protocol, self.address = parse_url(url, protocol)
        self.model = model
        self.batch_size = batch_size
        self._module = importlib.import_module(f"tritonclient.{self.protocol}")

    def _requests(self, images: Iterable[ImageInput], top_k: int | None):
        for chunk in _chunks(read_images(images), self.batch_size):
            yield build_inputs(self._module, chunk, top_k)


class Client(_Base):
    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        protocol: str | None = None,
        *,
        model: str = C.ENSEMBLE,
        batch_size: int = 32,
        timeout_s: float = 60.0,
    ):
        super().__init__(url, protocol, model, batch_size)
        if self.protocol == "http":
            self._client = self._module.InferenceServerClient(
                self.address, connection_timeout=timeout_s, network_timeout=timeout_s
            )
            self._infer_kwargs = {}
        else:
            self._client = self._module.InferenceServerClient(self.address)
            self._infer_kwargs = {"client_timeout": timeout_s}

    def classify(
        self, images: Iterable[ImageInput], top_k: int | None = None
    ) -> list[Classification]:
        """One Classification per image, in order; top_k=None uses the server's default."""
        out: list[Classification] = []
        for chunk in _chunks(read_images(images), self.batch_size):
            out.extend(self._infer(chunk, top_k))
        return out

    def classify_each(
        self, images: Iterable[ImageInput], top_k: int | None = None
    ) -> list[Classification | InvalidInput]:
        """Like `classify`, but an image the server refuses gets its InvalidInput in its place
        while the others are answered; any other error is raised. One bad image fails its
        whole request, so such a request is sent again one image at a time."""
        out: list[Classification | InvalidInput] = []
        for chunk in _chunks(read_images(images), self.batch_size):
            try:
                out.extend(self._infer(chunk, top_k))
            except InvalidInput as e:
                if len(chunk) == 1:
                    out.append(e)
                else:
                    for image in chunk:
                        out.extend(self.classify_each([image], top_k))
        return out

    def _infer(self, images: list[bytes], top_k: int | None) -> list[Classification]:
        inputs = build_inputs(self._module, images, top_k)
        try:
            result = self._client.infer(self.model, inputs, **self._infer_kwargs)
        except Exception as e:
            raise from_triton(e) from e
        return parse_result(result)

    def is_ready(self) -> bool:
        """True when the server and the model are ready; False when either is not."""
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except Exception as e:
            if isinstance(from_triton(e), ServerUnavailable):
                return False
            raise from_triton(e) from e

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class AsyncClient(_Base):
    """`Client` over tritonclient.http.aio / tritonclient.grpc.aio; use in `async with`."""

    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        protocol: str | None = None,
        *,
        model: str = C.ENSEMBLE,
        batch_size: int = 32,
        timeout_s: float = 60.0,
    ):
        super().__init__(url, protocol, model, batch_size)
        aio = importlib.import_module(f"tritonclient.{self.protocol}.aio")
        self._client = aio.InferenceServerClient(self.address)
        self._infer_kwargs = (
            {"timeout": int(timeout_s)}
            if self.protocol == "http"
            else {"client_timeout": timeout_s}
        )

    async def classify(
        self, images: Iterable[ImageInput], top_k: int | None = None
    ) -> list[Classification]:
        out: list[Classification] = []
        for inputs in self._requests(images, top_k):
            try:
                result = await self._client.infer(self.model, inputs, **self._infer_kwargs)
            except Exception as e:
                raise from_triton(e) from e
            out.extend(parse_result(result))
        return out

    async def close(self) -> None:
        await self._client.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
