"""What several commands take: paths, ports, keys, TLS, a server's URL, and flags derived from
a dataclass's fields (its defaults and comments stay where the dataclass is)."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from maas.errors import OptionError


def paths(p: argparse.ArgumentParser) -> None:
    p.add_argument("--artifacts", type=Path, default=Path("artifacts"),
                   help="checkpoints, ONNX, samples (default: artifacts/)")  # fmt: skip
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--data-dir", help="CIFAR-10 folder/tarball for a first training run")


def ports(p: argparse.ArgumentParser) -> None:
    p.add_argument("--http-port", type=int, default=8000)
    p.add_argument("--grpc-port", type=int, default=8001)
    p.add_argument("--metrics-port", type=int, default=8002)


def ports_of(args):
    from maas.access import Ports

    return Ports(args.http_port, args.grpc_port, args.metrics_port)


def keys(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--admin-key-file", type=Path,
        help="the key for model control, repository, shared memory, trace, logging (default: "
        "$MAAS_ADMIN_KEY, else a random one for this run: those APIs closed to others)",
    )  # fmt: skip
    p.add_argument(
        "--client-key-file", type=Path,
        help="make inference need this key (default: $MAAS_CLIENT_KEY, else open)",
    )  # fmt: skip


def server_tls(p: argparse.ArgumentParser, where: str) -> None:
    p.add_argument("--tls-cert", type=Path, help=f"server certificate (PEM): TLS on {where}")
    p.add_argument("--tls-key", type=Path, help="its private key (PEM)")
    p.add_argument(
        "--tls-client-ca", type=Path,
        help="mutual TLS: clients must present a certificate this CA signed",
    )  # fmt: skip


def server_tls_of(args):
    """serve.TLS from --tls-*, None without them; a missing half is an error."""
    from maas.access import TLS

    if args.tls_cert is None and args.tls_key is None:
        if args.tls_client_ca is not None:
            raise OptionError("--tls-client-ca needs --tls-cert and --tls-key")
        return None
    if args.tls_cert is None or args.tls_key is None:
        raise OptionError("TLS needs both --tls-cert and --tls-key")
    return TLS(args.tls_cert, args.tls_key, args.tls_client_ca)


def client(p: argparse.ArgumentParser, out: bool = True, tls: bool = True) -> None:
    p.add_argument(
        "--url", default="http://127.0.0.1:8000", help="http://host:port, https://..., grpc://..."
    )
    p.add_argument("--protocol", choices=["http", "grpc"], help="for a URL without a scheme")
    if tls:
        p.add_argument("--tls-ca", type=Path, help="TLS: the CA of the server's certificate")
        p.add_argument("--tls-cert", type=Path, help="mutual TLS: this client's certificate")
        p.add_argument("--tls-key", type=Path, help="mutual TLS: its private key")
    if out:
        p.add_argument("--out", type=Path, default=Path("generated"), help="folder for PNGs")


def client_of(args):
    """A maas.clients.client.Client for --url/--protocol/--tls-* (use it with `with`)."""
    from maas.clients.client import TLS, Client

    tls = None
    if getattr(args, "tls_ca", None) is not None or getattr(args, "tls_cert", None) is not None:
        tls = TLS(args.tls_ca, args.tls_cert, args.tls_key)
    return Client(args.url, args.protocol, tls=tls)


def positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    """0 or more."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def inflight(p: argparse.ArgumentParser) -> None:
    from maas.balancer import Balancer

    p.add_argument("--inflight", type=count, default=Balancer.inflight_per_replica, metavar="N",
                   help="inference requests in flight per replica and priority class at the "
                   "front door; the next is refused at once (503, gRPC UNAVAILABLE); 0: no "
                   "bound (default: %(default)s)")  # fmt: skip


def dataclass_flags(p, cls, skip: tuple[str, ...] = (), prefix: str = "") -> None:
    """A --flag for each field of the dataclass `cls`, typed and defaulted by it."""
    instance = cls()
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        value = getattr(instance, f.name)
        flag = "--" + (prefix + f.name).replace("_", "-")
        if isinstance(value, bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=value)
        elif isinstance(value, (int, float, str)):
            p.add_argument(flag, type=type(value), default=value, help=f"default: {value}")


def from_flags(cls, args, prefix: str = "", **given):
    """An instance of the dataclass `cls` from the flags `dataclass_flags` added."""
    names = {f.name for f in dataclasses.fields(cls)}
    values = {n: getattr(args, prefix + n) for n in names if hasattr(args, prefix + n)}
    try:
        return cls(**{**values, **given})
    except ValueError as e:
        raise OptionError(str(e)) from None
