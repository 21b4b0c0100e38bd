"""Who may call the front door, how often, and at which priority: a tenants file.

    tenants.json (mode 0600: it holds keys), one entry per tenant:
    {"tenants": {"web": {"key": "...",             the client key it sends, >= 16 bytes
                         "rate": 50,               requests per second, sustained
                         "burst": 20,              requests above the rate let through at once
                         "class": "interactive",   or "bulk": the Triton priority of its requests
                         "grpc": true},            false: HTTP only (see below)
                 "nightly": {...}}}

    tenants = Tenants.load(Path("tenants.json"))    # maas.balancer renders it into nginx.conf

The fleet's nginx checks the key before it reads a byte of the body (an unknown or missing key:
401), counts each tenant's inference requests in its own zone (nginx's limit_req; over quota:
429 with Retry-After), tells the replicas who is asking (the `maas-tenant` header, which
tritonserver forwards to the steps as a request parameter: a stream's sequences are kept per
tenant) and, over HTTP, sets the request's priority (the guard writes it into the JSON header it
forwards). Rewritten and reloaded (nginx's SIGHUP: no connection dropped) when the file changes.

Over gRPC the key, the quota and the tenant's own streams hold as over HTTP, but nginx cannot
rewrite a gRPC body: the priority is whatever the client asks (Triton's `priority` field,
default the lowest). A bulk tenant that must not ask for more gets `"grpc": false`.
"""

from __future__ import annotations

import json
import math
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from maas.access import MIN_KEY_BYTES
from maas.errors import OptionError

# Priority classes, highest first, and Triton's priority level of each (1 is served first).
# Requests that name no level (no tenant, or gRPC, whose body the front door cannot rewrite)
# get the lowest: a tenant is interactive only when the file says so.
CLASSES = ("interactive", "bulk")
LEVELS = len(CLASSES)  # every dynamically batched model's priority_levels (build.configs)

_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")  # also a part of nginx variable and zone names
_RESERVED = {"default", "include", "hostnames", "volatile"}  # nginx map's own words
MAX_KEY_BYTES = 128  # nginx's map hashes its entries in buckets of MAP_BUCKET bytes
MAP_BUCKET = 256
_KEY = re.compile(r"[A-Za-z0-9._~+/=-]+")  # base64 and token_urlsafe; safe inside nginx quotes


@dataclass(frozen=True)
class Tenant:
    name: str
    key: str
    rate: float  # requests per second
    burst: int
    cls: str = "interactive"
    grpc: bool = True  # also over gRPC, where the priority is the client's own

    @property
    def level(self) -> int:
        return CLASSES.index(self.cls) + 1

    @property
    def retry_after(self) -> int:
        """Seconds until the quota admits one more request, at the rate nginx enforces: it
        keeps whole requests per second or per minute (nginx_rate), and a per-minute rate
        as thousandths of a request per millisecond, rounded down (1r/m: one per 62.5 s)."""
        if float(self.rate).is_integer():
            return max(1, math.ceil(1 / self.rate))
        per_ms = max(1, round(self.rate * 60)) * 1000 // 60  # nginx's ctx->rate
        return math.ceil(1000 / per_ms)

    @property
    def nginx_rate(self) -> str:
        """nginx's rate: whole requests per second, else per minute (0.5 -> 30r/m)."""
        if float(self.rate).is_integer():
            return f"{int(self.rate)}r/s"
        return f"{max(1, round(self.rate * 60))}r/m"

    def __repr__(self) -> str:  # never the key
        grpc = "" if self.grpc else ", HTTP only"
        return f"Tenant({self.name!r}, rate={self.rate:g}, burst={self.burst}, {self.cls}{grpc})"


@dataclass(frozen=True)
class Tenants:
    tenants: tuple[Tenant, ...]

    @classmethod
    def load(cls, path: Path) -> Tenants:
        """The file, checked whole: a mistake anywhere refuses all of it (the front door keeps
        what it had), with the tenant and field named."""
        path = Path(path)
        try:
            mode = path.stat().st_mode
            data = json.loads(path.read_text())
        except OSError as e:
            raise OptionError(f"tenants file {path}: {e.strerror}") from e
        except ValueError as e:
            raise OptionError(f"tenants file {path}: not JSON ({e})") from e
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise OptionError(f"tenants file {path} holds keys: make it private (chmod 600)")
        return cls.parse(data, str(path))

    @classmethod
    def parse(cls, data: dict, source: str = "tenants") -> Tenants:
        table = data.get("tenants") if isinstance(data, dict) else None
        if not isinstance(table, dict) or not table:
            raise OptionError(f'{source}: no {{"tenants": {{"<name>": {{...}}}}}} object')
        tenants, keys = [], set()
        for name, fields in table.items():
            where = f"{source}: tenant {name!r}"
            if not _NAME.fullmatch(name) or name in _RESERVED:
                words = ", ".join(sorted(_RESERVED))
                raise OptionError(f"{where}: a name is a-z, 0-9 and _, starting with a letter, "
                                  f"and not one of nginx's words ({words})")  # fmt: skip
            if not isinstance(fields, dict):
                raise OptionError(f"{where}: expected an object of key, rate, burst, class")
            unknown = set(fields) - {"key", "rate", "burst", "class", "grpc"}
            if unknown:
                raise OptionError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
            key = fields.get("key")
            if not isinstance(key, str) or not MIN_KEY_BYTES <= len(key.encode()) <= MAX_KEY_BYTES:
                raise OptionError(
                    f"{where}: key must be a string of {MIN_KEY_BYTES} to {MAX_KEY_BYTES} bytes"
                )
            if not _KEY.fullmatch(key):
                raise OptionError(f"{where}: key may hold letters, digits and . _ ~ + / = - only")
            if key.casefold() in keys:  # nginx's map compares keys ignoring case
                raise OptionError(f"{where}: its key is another tenant's (letter case aside)")
            keys.add(key.casefold())
            rate, burst = fields.get("rate"), fields.get("burst", 0)
            if isinstance(rate, bool) or not isinstance(rate, int | float) or not rate > 0:
                raise OptionError(f"{where}: rate must be a number of requests per second > 0")
            if rate * 60 < 1:
                raise OptionError(f"{where}: rate {rate} is under one request a minute")
            if isinstance(burst, bool) or not isinstance(burst, int) or burst < 0:
                raise OptionError(f"{where}: burst must be a whole number >= 0")
            kind = fields.get("class", CLASSES[0])
            if kind not in CLASSES:
                raise OptionError(f"{where}: class must be one of {', '.join(CLASSES)}")
            grpc = fields.get("grpc", True)
            if not isinstance(grpc, bool):
                raise OptionError(f"{where}: grpc must be true or false")
            tenants.append(Tenant(name, key, float(rate), burst, kind, grpc))
        return cls(tuple(tenants))
