"""One client for every served pipeline; the URL picks the protocol.

    Client("http://host:8000")   Client("grpc://host:8001")   Client("host:8001", protocol="grpc")
    Client(["grpc://replica-1:8001", "grpc://replica-2:8001"])   # failover between servers

`infer(pipeline, {name: array})` speaks any pipeline (arrays with the batch axis first; the
datatype follows the dtype) and returns every output by name. Each family adds one typed
method over it: `classify` takes encoded image bytes or paths and returns one
`Classification` per image, splitting long lists into requests of at most `batch_size`
images; `forecast` takes one series and returns a `Forecast` with its interval; the VAE's
`encode` (images -> latent rows), `decode` (latent rows -> PNGs), `reconstruct` (images ->
PNGs) and `sample` (seed, count -> PNGs); the GAN's `generate` (digit, seed, count -> PNGs).
`AsyncClient` is the same over tritonclient's asyncio clients. The tensors of each request and
answer are maas.clients.tensors; the URL, TLS and retry policy maas.clients.connection; errors
the typed tree in maas.clients.errors.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np

from maas import contract
from maas.clients.connection import TLS, Retry, parse_url, wait_or_raise
from maas.clients.errors import BadURL, InvalidInput, ServerUnavailable, from_triton
from maas.clients.tensors import (
    Classification,
    Forecast,
    StreamStep,
    arrays,
    classifications,
    forecasts,
    generation_request,
    image_request,
    images_only,
    infer_inputs,
    latent_request,
    observation,
    pngs,
    series_request,
    stream_step,
)
from maas.runtime import names as C

ImageInput = bytes | str | Path


def read_images(images: Iterable[ImageInput]) -> list[bytes]:
    return [img if isinstance(img, bytes) else Path(img).read_bytes() for img in images]


def _chunks(items: list[bytes], size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


class _Base:
    """What both clients share: the URL(s), the pipeline, requests of at most batch_size, and
    the retry policy. Given several URLs (replicas without a balancer in front), a request
    that finds its server away is retried on the next one."""

    def __init__(
        self, url: str | Sequence[str], protocol: str | None, model: str, batch_size: int,
        retry: Retry, key: str | None, tls: TLS | None,
    ):  # fmt: skip
        urls = [url] if isinstance(url, str) else list(url)
        if not urls:
            raise BadURL("no URL given")
        parsed = [parse_url(u, protocol) for u in urls]
        if len({scheme for scheme, _ in parsed}) > 1:
            raise BadURL(f"URLs of one client speak one protocol: {urls}")
        self.protocol = "http" if parsed[0][0] == "https" else parsed[0][0]
        self.tls = tls if tls is not None or parsed[0][0] != "https" else TLS()
        self.addresses = [address for _, address in parsed]
        self.model = model
        self.batch_size = batch_size
        self.retry = retry
        self._module = importlib.import_module(f"tritonclient.{self.protocol}")
        # A server that restricts inference (maas serve with a client key) checks this header.
        self.headers = contract.client_key_headers(self.protocol, key)
        self._clients: list = []  # one tritonclient client per address, made by the subclass
        self._at = 0  # the address requests go to now

    @property
    def address(self) -> str:
        return self.addresses[self._at]

    @property
    def _client(self):
        return self._clients[self._at]

    def _next_server(self) -> None:
        self._at = (self._at + 1) % len(self.addresses)

    def _tensors(self, inputs: Mapping[str, np.ndarray]) -> list:
        return infer_inputs(self._module, inputs)

    def _headers(self, sequence: Mapping) -> dict[str, str] | None:
        """The key's header, and a sequence step's ID for a balancer to route by."""
        if not sequence.get("sequence_id"):
            return self.headers
        return {**(self.headers or {}), contract.SEQUENCE_HEADER: str(sequence["sequence_id"])}


class Client(_Base):
    def __init__(
        self,
        url: str = "http://127.0.0.1:8000",
        protocol: str | None = None,
        *,
        model: str = C.ENSEMBLE,
        batch_size: int = 32,
        timeout_s: float = 60.0,
        retry: Retry | None = None,
        key: str | None = None,
        tls: TLS | None = None,
    ):
        super().__init__(url, protocol, model, batch_size, retry or Retry(), key, tls)
        secure = self.tls.kwargs(self.protocol) if self.tls else {}
        if self.protocol == "http":
            self._clients = [
                self._module.InferenceServerClient(
                    a, connection_timeout=timeout_s, network_timeout=timeout_s, **secure
                )
                for a in self.addresses
            ]
            self._infer_kwargs = {}
        else:
            self._clients = [
                self._module.InferenceServerClient(a, **secure) for a in self.addresses
            ]
            self._infer_kwargs = {"client_timeout": timeout_s}

    def classify(
        self, images: Iterable[ImageInput], top_k: int | None = None
    ) -> list[Classification]:
        """One Classification per image, in order; top_k=None uses the server's default."""
        out: list[Classification] = []
        for chunk in _chunks(read_images(images), self.batch_size):
            out.extend(classifications(self.infer(self.model, image_request(chunk, top_k))))
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
                out.extend(classifications(self.infer(self.model, image_request(chunk, top_k))))
            except InvalidInput as e:
                if len(chunk) == 1:
                    out.append(e)
                else:
                    for image in chunk:
                        out.extend(self.classify_each([image], top_k))
        return out

    def forecast(self, history: Sequence[float], horizon: int | None = None) -> Forecast:
        """The next `horizon` values of a series (None: the model's horizon), with an interval."""
        [answer] = forecasts(self.infer(C.FORECASTER, series_request(history, horizon)))
        return answer

    def encode(self, images: Iterable[ImageInput]) -> np.ndarray:
        """The VAE's code of each image: float32 (N, latent)."""
        parts = [
            self.infer(C.VAE_ENCODE, images_only(chunk))[C.LATENT]
            for chunk in _chunks(read_images(images), self.batch_size)
        ]
        return np.concatenate(parts)

    def decode(self, latents: np.ndarray) -> list[bytes]:
        """One PNG per latent row (what `encode` returns, or any point of the latent space)."""
        out: list[bytes] = []
        for i in range(0, len(latents), self.batch_size):
            request = latent_request(latents[i : i + self.batch_size])
            out.extend(pngs(self.infer(C.VAE_DECODE, request)))
        return out

    def reconstruct(self, images: Iterable[ImageInput]) -> list[bytes]:
        """Each image through the VAE's encoder and decoder: one PNG per image."""
        out: list[bytes] = []
        for chunk in _chunks(read_images(images), self.batch_size):
            out.extend(pngs(self.infer(C.VAE_RECONSTRUCT, images_only(chunk))))
        return out

    def sample(self, seed: int = 0, count: int = 1) -> list[bytes]:
        """`count` PNGs drawn by the VAE's decoder from `seed` (the same seed, the same images)."""
        return pngs(self.infer(C.VAE_SAMPLE, generation_request(seed, count)))

    def generate(self, digit: int, seed: int = 0, count: int = 1) -> list[bytes]:
        """`count` PNGs of `digit` drawn by the GAN from `seed` (the same seed, the same images)."""
        return pngs(self.infer(C.GENERATOR, generation_request(seed, count, digit)))

    def infer(
        self, pipeline: str, inputs: Mapping[str, np.ndarray], **sequence
    ) -> dict[str, np.ndarray]:
        """Any served pipeline: its input arrays (batch axis first) in, every output out.
        `sequence`: tritonclient's sequence_id, sequence_start, sequence_end, for a stream."""
        tensors = self._tensors(inputs)
        waits = iter(() if sequence else self.retry.waits())  # a stream's step is not repeated
        headers = self._headers(sequence)
        while True:
            try:
                result = self._client.infer(
                    pipeline, tensors, headers=headers, **self._infer_kwargs, **sequence
                )
                return arrays(result)
            except Exception as e:
                wait = wait_or_raise(waits, e)
                self._next_server()
            time.sleep(wait)

    def observe(
        self, sequence: int | str, value: float, *, start: bool = False, end: bool = False
    ) -> StreamStep:
        """The next value of stream `sequence` (an ID of the caller's choosing, an integer > 0 or
        a non-empty string: maas.clients.tensors.new_sequence_id draws one nobody guesses;
        `start` with the first, `end` with the last): the server keeps the window, answers the
        next-step forecast once it holds one (NaN until then)."""
        inputs, flags = observation(sequence, value, start, end)
        return stream_step(self.infer(C.FORECASTER_STREAM, inputs, **flags))

    def is_ready(self) -> bool:
        """True when the server and the model are ready; False when either is not."""
        try:
            return bool(self._client.is_server_ready() and self._client.is_model_ready(self.model))
        except Exception as e:
            if isinstance(from_triton(e), ServerUnavailable):
                return False
            raise from_triton(e) from e

    def close(self) -> None:
        for client in self._clients:
            client.close()

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
        retry: Retry | None = None,
        key: str | None = None,
        tls: TLS | None = None,
    ):
        super().__init__(url, protocol, model, batch_size, retry or Retry(), key, tls)
        aio = importlib.import_module(f"tritonclient.{self.protocol}.aio")
        secure = self.tls.kwargs(self.protocol, aio=True) if self.tls else {}
        # HTTP: aiohttp's total timeout per request (infer's own `timeout` is a server-side
        # limit in microseconds); gRPC: the call's deadline.
        http = self.protocol == "http"
        extra = {"conn_timeout": timeout_s} if http else {}
        self._clients = [aio.InferenceServerClient(a, **secure, **extra) for a in self.addresses]
        self._infer_kwargs = {} if http else {"client_timeout": timeout_s}

    async def classify(
        self, images: Iterable[ImageInput], top_k: int | None = None
    ) -> list[Classification]:
        out: list[Classification] = []
        for chunk in _chunks(read_images(images), self.batch_size):
            outputs = await self.infer(self.model, image_request(chunk, top_k))
            out.extend(classifications(outputs))
        return out

    async def forecast(self, history: Sequence[float], horizon: int | None = None) -> Forecast:
        [answer] = forecasts(await self.infer(C.FORECASTER, series_request(history, horizon)))
        return answer

    async def encode(self, images: Iterable[ImageInput]) -> np.ndarray:
        parts = [
            (await self.infer(C.VAE_ENCODE, images_only(chunk)))[C.LATENT]
            for chunk in _chunks(read_images(images), self.batch_size)
        ]
        return np.concatenate(parts)

    async def decode(self, latents: np.ndarray) -> list[bytes]:
        out: list[bytes] = []
        for i in range(0, len(latents), self.batch_size):
            request = latent_request(latents[i : i + self.batch_size])
            out.extend(pngs(await self.infer(C.VAE_DECODE, request)))
        return out

    async def reconstruct(self, images: Iterable[ImageInput]) -> list[bytes]:
        out: list[bytes] = []
        for chunk in _chunks(read_images(images), self.batch_size):
            out.extend(pngs(await self.infer(C.VAE_RECONSTRUCT, images_only(chunk))))
        return out

    async def sample(self, seed: int = 0, count: int = 1) -> list[bytes]:
        return pngs(await self.infer(C.VAE_SAMPLE, generation_request(seed, count)))

    async def generate(self, digit: int, seed: int = 0, count: int = 1) -> list[bytes]:
        return pngs(await self.infer(C.GENERATOR, generation_request(seed, count, digit)))

    async def infer(
        self, pipeline: str, inputs: Mapping[str, np.ndarray], **sequence
    ) -> dict[str, np.ndarray]:
        tensors = self._tensors(inputs)
        waits = iter(() if sequence else self.retry.waits())
        kwargs = {**self._infer_kwargs, **sequence, "headers": self._headers(sequence)}
        while True:
            try:
                return arrays(await self._client.infer(pipeline, tensors, **kwargs))
            except Exception as e:
                wait = wait_or_raise(waits, e)
                self._next_server()
            await asyncio.sleep(wait)

    async def observe(
        self, sequence: int | str, value: float, *, start: bool = False, end: bool = False
    ) -> StreamStep:
        inputs, flags = observation(sequence, value, start, end)
        return stream_step(await self.infer(C.FORECASTER_STREAM, inputs, **flags))

    async def close(self) -> None:
        for client in self._clients:
            await client.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
