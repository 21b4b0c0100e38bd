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
`AsyncClient` is the same over tritonclient's asyncio clients. Errors are the typed tree in
maas.clients.errors.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
from tritonclient.utils import np_to_triton_dtype

from maas import contract
from maas.clients.errors import BadURL, InvalidInput, ModelNotReady, ServerUnavailable, from_triton
from maas.runtime import names as C

DEFAULT_PORTS = {"http": 8000, "https": 443, "grpc": 8001}
ImageInput = bytes | str | Path


@dataclass(frozen=True)
class TLS:
    """TLS for a client: the CA that signed the server's certificate (None: the system's) and,
    for mutual TLS, this client's certificate and key (PEM files). An https:// URL without it
    trusts the system's CAs."""

    ca: str | Path | None = None
    cert: str | Path | None = None
    key: str | Path | None = None

    def kwargs(self, protocol: str, aio: bool = False) -> dict:
        """tritonclient's keyword arguments for its client of `protocol` (blocking, or asyncio:
        tritonclient.http.aio takes an SSLContext)."""
        if protocol == "http" and aio:
            return {"ssl": True, "ssl_context": self.context()}
        if protocol == "grpc":
            files = (self.ca, self.key, self.cert)
            names = ("root_certificates", "private_key", "certificate_chain")
            return {"ssl": True, **{n: str(f) for n, f in zip(names, files, strict=True) if f}}
        options = {"ca_certs": str(self.ca)} if self.ca else {}
        if self.cert:
            options.update(certfile=str(self.cert), keyfile=str(self.key))
        return {"ssl": True, "ssl_options": options}

    def context(self):
        """An ssl.SSLContext (tritonclient.http.aio's form)."""
        import ssl

        context = ssl.create_default_context(cafile=str(self.ca) if self.ca else None)
        if self.cert:
            context.load_cert_chain(str(self.cert), str(self.key))
        return context


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
    """'grpc://h:p' -> ('grpc', 'h:p'); a bare 'h:p' needs `protocol` (default http); an
    https:// URL is ('https', ...): HTTP over TLS."""
    parts = urlsplit(url if "://" in url else f"//{url}")
    scheme = parts.scheme or protocol or "http"
    if protocol and parts.scheme and protocol != parts.scheme:
        raise BadURL(f"URL {url!r} says {parts.scheme} but protocol={protocol!r}")
    if scheme not in DEFAULT_PORTS:
        raise BadURL(
            f"unsupported protocol {scheme!r} in {url!r}: use http://, https:// or grpc://"
        )
    if not parts.hostname:
        raise BadURL(f"no host in URL {url!r}")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return scheme, f"{host}:{parts.port or DEFAULT_PORTS[scheme]}"


def read_images(images: Iterable[ImageInput]) -> list[bytes]:
    return [img if isinstance(img, bytes) else Path(img).read_bytes() for img in images]


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


def observation(sequence: int, value: float, start: bool, end: bool) -> tuple[dict, dict]:
    """The stream's input for one value, and tritonclient's sequence arguments."""
    flags = {"sequence_id": sequence, "sequence_start": start, "sequence_end": end}
    return {C.OBSERVATION: np.array([[value]], np.float32)}, flags


def stream_step(outputs: Mapping[str, np.ndarray]) -> StreamStep:
    return StreamStep(
        *(float(outputs[n][0, 0]) for n in (C.NEXT, C.NEXT_LOWER, C.NEXT_UPPER)),
        held=int(outputs[C.HELD][0, 0]),
    )


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


def _images_only(images: Sequence[bytes]) -> dict[str, np.ndarray]:
    return {C.IMAGE: np.array(images, dtype=object).reshape(-1, 1)}


def _chunks(items: list[bytes], size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


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


def _arrays(result) -> dict[str, np.ndarray]:
    """Every output of a tritonclient result (HTTP: JSON dict; gRPC: protobuf) by name."""
    response = result.get_response()
    outputs = response["outputs"] if isinstance(response, dict) else response.outputs
    names = [o["name"] if isinstance(o, dict) else o.name for o in outputs]
    return {name: result.as_numpy(name) for name in names}


@dataclass(frozen=True)
class Retry:
    """Send a request again when the server is briefly away (ServerUnavailable: connection
    refused, UNAVAILABLE, a model whose Python stub died and is being reloaded) or the model
    is (re)loading (ModelNotReady): up to `attempts` tries in all, waiting `backoff_s`,
    doubling up to `max_backoff_s`, between them. `Retry(attempts=1)` switches it off. Only
    for requests that are safe to repeat: every maas pipeline's are (a stream's are not: its
    observe() never retries)."""

    attempts: int = 6
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0

    def waits(self):
        wait = self.backoff_s
        for _ in range(self.attempts - 1):
            yield wait
            wait = min(2 * wait, self.max_backoff_s)


RETRYABLE = (ServerUnavailable, ModelNotReady)


def _wait_or_raise(waits, exc: Exception) -> float:
    """How long to wait before trying a failed request again (the policy's next wait), or
    raise it as our error when it is not worth retrying or the tries are used up."""
    error = from_triton(exc)
    wait = next(waits, None) if isinstance(error, RETRYABLE) else None
    if wait is None:
        raise error from exc
    return wait


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
            self.infer(C.VAE_ENCODE, _images_only(chunk))[C.LATENT]
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
            out.extend(pngs(self.infer(C.VAE_RECONSTRUCT, _images_only(chunk))))
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
                return _arrays(result)
            except Exception as e:
                wait = _wait_or_raise(waits, e)
                self._next_server()
            time.sleep(wait)

    def observe(
        self, sequence: int, value: float, *, start: bool = False, end: bool = False
    ) -> StreamStep:
        """The next value of stream `sequence` (an ID > 0 of the caller's choosing; `start`
        with the first, `end` with the last): the server keeps the window, answers the
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
        self._clients = [aio.InferenceServerClient(a, **secure) for a in self.addresses]
        self._infer_kwargs = (
            {"timeout": int(timeout_s)}
            if self.protocol == "http"
            else {"client_timeout": timeout_s}
        )

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
            (await self.infer(C.VAE_ENCODE, _images_only(chunk)))[C.LATENT]
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
            out.extend(pngs(await self.infer(C.VAE_RECONSTRUCT, _images_only(chunk))))
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
                return _arrays(await self._client.infer(pipeline, tensors, **kwargs))
            except Exception as e:
                wait = _wait_or_raise(waits, e)
                self._next_server()
            await asyncio.sleep(wait)

    async def observe(
        self, sequence: int, value: float, *, start: bool = False, end: bool = False
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
