"""Where a tritonserver listens and who may reach what: its ports, its restricted APIs'
keys, and TLS on its gRPC port.

    keys = Keys.from_env(admin_file, client_file)   # MAAS_ADMIN_KEY / MAAS_CLIENT_KEY else
    keys.args()                                    # tritonserver's --*-restricted-* options
"""

from __future__ import annotations

import os
import secrets
import socket
from dataclasses import dataclass, field
from pathlib import Path

from maas import contract as C
from maas.errors import ServerError

# Triton's restricted APIs (--http-restricted-api, --grpc-restricted-protocol): a request to
# one of them must carry the header with the key. Model control lives in model-repository.
ADMIN_APIS = ("model-repository", "shared-memory", "trace", "logging")
CLIENT_APIS = ("inference",)
ADMIN_HEADER, CLIENT_HEADER = C.ADMIN_HEADER, C.CLIENT_HEADER
MIN_KEY_BYTES = 16


@dataclass(frozen=True)
class Keys:
    """The admin key (model control, repository, shared memory, trace, logging) and, when the
    user asks for one, the client key (inference). No admin key given: a random one, known
    only to this process (the watchdog's reloads), so those APIs are closed by default.
    Health, metadata, config and statistics stay open. The values never appear in maas's
    output or its own command line; Triton takes them only on its command line, so processes
    of the same user can read them from /proc (run it under its own user)."""

    admin: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    client: str | None = field(default=None, repr=False)

    def __post_init__(self):
        for name, key in (("admin", self.admin), ("client", self.client)):
            if key is not None and len(key.encode()) < MIN_KEY_BYTES:
                raise ServerError(
                    f"the {name} key is {len(key.encode())} bytes: at least {MIN_KEY_BYTES}, "
                    "so that it cannot be guessed (e.g. python3 -c 'import secrets; "
                    "print(secrets.token_urlsafe(24))')"
                )

    @classmethod
    def from_env(cls, admin_file: Path | None = None, client_file: Path | None = None) -> Keys:
        """Keys from files (--admin-key-file/--client-key-file) or MAAS_ADMIN_KEY /
        MAAS_CLIENT_KEY; an empty value is an error, not an open API."""

        def read(path: Path | None, env: str) -> str | None:
            value = path.read_text().strip() if path else os.environ.get(env)
            if value is not None and not value:
                raise ServerError(f"{path or env} is empty: give a key or leave it unset")
            if value is not None and len(value.encode()) < MIN_KEY_BYTES:
                raise ServerError(f"{path or env}: a key of {len(value.encode())} bytes; give "
                                  f"at least {MIN_KEY_BYTES}")  # fmt: skip
            return value

        admin = read(admin_file, C.ADMIN_KEY_ENV)
        client = read(client_file, C.CLIENT_KEY_ENV)
        return cls(client=client) if admin is None else cls(admin, client)

    @property
    def headers(self) -> dict[str, str]:
        """What maas's own requests carry: both keys (a header Triton does not check is ignored)."""
        return {ADMIN_HEADER: self.admin, **({CLIENT_HEADER: self.client} if self.client else {})}

    def args(self) -> list[str]:
        restricted = [(ADMIN_APIS, ADMIN_HEADER, self.admin)]
        if self.client:
            restricted.append((CLIENT_APIS, CLIENT_HEADER, self.client))
        return [
            f"--{flag}={','.join(apis)}:{header}={key}"
            for apis, header, key in restricted
            for flag in ("http-restricted-api", "grpc-restricted-protocol")
        ]


@dataclass(frozen=True)
class TLS:
    """A server certificate and its key (PEM files) and, for mutual TLS, the CA whose
    certificates clients must present. tritonserver speaks TLS on gRPC only (its HTTP has
    none): HTTPS is the balancer's (maas fleet: nginx)."""

    cert: Path
    key: Path
    client_ca: Path | None = None

    def __post_init__(self):
        for name in ("cert", "key", "client_ca"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ServerError(f"TLS {name.replace('_', ' ')}: no file at {path}")

    def grpc_args(self) -> list[str]:
        args = [f"--grpc-server-cert={self.cert}", f"--grpc-server-key={self.key}"]
        if self.client_ca is None:
            return [*args, "--grpc-use-ssl=true"]
        return [*args, "--grpc-use-ssl-mutual=true", f"--grpc-root-cert={self.client_ca}"]


@dataclass(frozen=True)
class Ports:
    http: int = 8000
    grpc: int = 8001
    metrics: int = 8002

    @classmethod
    def free(cls) -> Ports:
        """Three ports the OS reports free on loopback right now."""
        socks = [socket.socket() for _ in range(3)]
        try:
            for s in socks:
                s.bind(("127.0.0.1", 0))
            return cls(*(s.getsockname()[1] for s in socks))
        finally:
            for s in socks:
                s.close()
