"""Where and how a client connects: the URL (which protocol, which host:port), TLS, and the
retry policy for a server that is briefly away.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from maas.clients.errors import BadURL, ModelNotReady, ServerUnavailable, from_triton

DEFAULT_PORTS = {"http": 8000, "https": 443, "grpc": 8001}


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


@dataclass(frozen=True)
class Retry:
    """Send a request again when the server is briefly away (ServerUnavailable: connection
    refused, UNAVAILABLE, a model whose Python stub died and is being reloaded), overloaded
    (Overloaded: its admission queue was full) or the model is (re)loading (ModelNotReady):
    up to `attempts` tries in all, waiting `backoff_s`, doubling up to `max_backoff_s`,
    between them, each wait drawn from its upper `jitter` share at random so that clients
    refused together do not come back together. `Retry(attempts=1)` switches it off. Only for
    requests that are safe to repeat: every maas pipeline's are (a stream's are not: its
    observe() never retries)."""

    attempts: int = 6
    backoff_s: float = 0.1
    max_backoff_s: float = 2.0
    jitter: float = 0.5  # 0: the waits exactly; 0.5: each between half and all of its own

    def __post_init__(self):
        if self.attempts < 1 or self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError(f"{self}: attempts >= 1, 0 <= backoff_s <= max_backoff_s")
        if not 0 <= self.jitter <= 1:
            raise ValueError(f"Retry jitter must be within 0..1, got {self.jitter}")

    def waits(self):
        wait = self.backoff_s
        for _ in range(self.attempts - 1):
            yield wait * (1 - self.jitter * random.random())
            wait = min(2 * wait, self.max_backoff_s)


RETRYABLE = (ServerUnavailable, ModelNotReady)


def wait_or_raise(waits, exc: Exception) -> float:
    """How long to wait before trying a failed request again (the policy's next wait), or
    raise it as our error when it is not worth retrying or the tries are used up."""
    error = from_triton(exc)
    wait = next(waits, None) if isinstance(error, RETRYABLE) else None
    if wait is None:
        raise error from exc
    return wait
