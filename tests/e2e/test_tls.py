"""TLS with real parts: tritonserver's own gRPC SSL (a server certificate, then mutual TLS),
and HTTPS and gRPC over TLS at the fleet's nginx. The certificates are made here (the
cryptography package), in the test's temporary folder: a CA, a server certificate for
127.0.0.1, a client certificate, and a client certificate from another CA."""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import json
from pathlib import Path

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from maas.access import TLS, Ports
from maas.balancer import Balancer, has_nginx
from maas.clients.client import TLS as ClientTLS
from maas.clients.client import AsyncClient, Client, Retry
from maas.clients.errors import ClientError, NotAuthorized
from maas.errors import ServerError
from maas.fleet import Fleet
from maas.serve import ServerConfig

ONCE = Retry(attempts=1)  # a refused handshake is not worth a retry here


def _pem_key(key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _certificate(name: str, key, issuer=None, issuer_key=None, *, ca=False, server=False):
    """A certificate for `key`, signed by `issuer_key` (itself when None: a CA's)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.subject if issuer else subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if not ca:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        names = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(issuer_key or key, hashes.SHA256())


@pytest.fixture(scope="module")
def certs(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("tls")
    files: dict[str, Path] = {}

    def write(name: str, cert, key) -> None:
        files[name] = folder / f"{name}.pem"
        files[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        files[f"{name}.key"] = folder / f"{name}.key"
        files[f"{name}.key"].write_bytes(_pem_key(key))

    cas = {}
    for ca_name in ("ca", "rogue-ca"):
        key = ec.generate_private_key(ec.SECP256R1())
        cas[ca_name] = (_certificate(ca_name, key, ca=True), key)
        write(ca_name, *cas[ca_name])
    for name, server, (issuer, issuer_key) in (
        ("server", True, cas["ca"]),
        ("client", False, cas["ca"]),
        ("rogue-client", False, cas["rogue-ca"]),
    ):
        key = ec.generate_private_key(ec.SECP256R1())
        write(name, _certificate(name, key, issuer, issuer_key, server=server), key)
    return files


def test_missing_certificate_files_are_named(tmp_path):
    with pytest.raises(ServerError, match=r"TLS cert: no file at .*nope\.pem"):
        TLS(tmp_path / "nope.pem", tmp_path / "nope.key")


@pytest.fixture(scope="module", params=["server-certificate", "mutual"])
def tls_server(request, classifier_repository, certs, triton):
    mutual = request.param == "mutual"
    tls = TLS(certs["server"], certs["server.key"], certs["ca"] if mutual else None)
    with triton(classifier_repository, ServerConfig(tls=tls)) as server:
        yield server, mutual


def test_grpc_over_tls_answers_a_client_that_trusts_its_ca(tls_server, certs, heldout_png, offline):
    server, mutual = tls_server
    tls = ClientTLS(certs["ca"], certs["client"], certs["client.key"]) if mutual else None
    tls = tls or ClientTLS(certs["ca"])
    with Client(server.url("grpc"), tls=tls, batch_size=2) as client:
        got = client.classify(heldout_png[:4], top_k=1)
    np.testing.assert_array_equal([c.top.class_id for c in got], offline["ids"][:4, 0])

    async def classify_async():  # the asyncio client's own TLS channel (grpc.aio)
        async with AsyncClient(server.url("grpc"), tls=tls, batch_size=2) as client:
            return await client.classify(heldout_png[:4], top_k=1)

    got = asyncio.run(classify_async())
    np.testing.assert_array_equal([c.top.class_id for c in got], offline["ids"][:4, 0])


def test_grpc_over_tls_refuses_the_wrong_clients(tls_server, certs, heldout_png):
    server, mutual = tls_server
    refused = [None, ClientTLS(certs["rogue-ca"])]  # plain text; a CA that did not sign it
    if mutual:  # no client certificate; one from another CA
        refused += [
            ClientTLS(certs["ca"]),
            ClientTLS(certs["ca"], certs["rogue-client"], certs["rogue-client.key"]),
        ]
    for tls in refused:
        with (
            Client(server.url("grpc"), tls=tls, retry=ONCE, timeout_s=10) as client,
            pytest.raises(ClientError),
        ):
            client.classify(heldout_png[:1])
    # maas's own probes and reloads go over plain HTTP, which stays as it was.
    with Client(server.url("http")) as client:
        assert len(client.classify(heldout_png[:1])) == 1


@pytest.mark.skipif(not has_nginx(), reason="nginx or its njs module missing")
def test_the_balancer_speaks_https_and_grpc_over_tls(
    classifier_repository, certs, heldout_png, offline, tmp_path
):
    """Mutual TLS at nginx (its config from maas.fleet); the replica behind it on loopback.
    With tenants: the key is what admits, over HTTPS and gRPC over TLS alike."""
    ports = Ports.free()
    tls = TLS(certs["server"], certs["server.key"], certs["ca"])
    lb = Balancer(http=ports.http, grpc=ports.grpc, tls=tls)
    client_tls = ClientTLS(certs["ca"], certs["client"], certs["client.key"])
    key = "tls-tenant-" + "k" * 16
    tenants = tmp_path / "tenants.json"
    tenants.write_text(json.dumps({"tenants": {"web": {"key": key, "rate": 100, "burst": 100}}}))
    tenants.chmod(0o600)
    with Fleet(classifier_repository, 1, balancer=lb, state_dir=tmp_path,
               tenants_file=tenants) as fleet:  # fmt: skip
        assert fleet.url("http").startswith("https://")
        for url in (fleet.url("http"), fleet.url("grpc")):
            with Client(url, tls=client_tls, key=key) as client:
                got = client.classify(heldout_png[:2], top_k=1)
            np.testing.assert_array_equal([c.top.class_id for c in got], offline["ids"][:2, 0])
            with (
                Client(url, tls=client_tls, retry=ONCE) as client,
                pytest.raises(NotAuthorized),
            ):
                client.classify(heldout_png[:1])
            # Without a client certificate, nginx answers nothing the client can use.
            with (
                Client(url, tls=ClientTLS(certs["ca"]), retry=ONCE, timeout_s=10) as client,
                pytest.raises(ClientError),
            ):
                client.classify(heldout_png[:1])
        # Plain HTTP on the HTTPS port: refused too.
        with (
            Client(f"http://{fleet.http_url}", retry=ONCE, timeout_s=10) as client,
            pytest.raises(ClientError),
        ):
            client.classify(heldout_png[:1])
