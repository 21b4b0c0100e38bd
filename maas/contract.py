"""What maas's own processes agree on around Triton: the keys' headers and environment
variables, the sequence header the balancer routes by, the tenant header, the fleet's state
folder."""

from maas.runtime.names import TENANT as TENANT_HEADER

# Triton's restricted APIs (maas.access.Keys): the headers that carry the keys, and the
# environment variables maas reads them from.
ADMIN_HEADER, CLIENT_HEADER = "admin-key", "client-key"
GRPC_HEADER_PREFIX = "triton-grpc-protocol-"  # Triton expects gRPC's key headers named so
# Sent by maas's clients with each step of a sequence: the fleet's balancer routes a sequence
# by it over gRPC (over HTTP it reads the body's sequence_id).
SEQUENCE_HEADER = "maas-sequence"
# tritonserver forwards this header to the steps as a request parameter (--*-header-forward-
# pattern); the front door sets it (maas.tenants), so a client cannot choose it there.
FORWARD_PATTERN = f"^{TENANT_HEADER}$"
ADMIN_KEY_ENV, CLIENT_KEY_ENV = "MAAS_ADMIN_KEY", "MAAS_CLIENT_KEY"
FLEET_STATE_DIR = ".maas-fleet"  # maas fleet's pids, ports, admin key, scrape config


def client_key_headers(protocol: str, key: str | None = None) -> dict[str, str] | None:
    """The inference key's header for `protocol` (the key given, else $MAAS_CLIENT_KEY), or
    None where there is no key (a server that did not ask for one)."""
    import os

    key = key if key is not None else os.environ.get(CLIENT_KEY_ENV)
    if not key:
        return None
    return {(CLIENT_HEADER if protocol == "http" else GRPC_HEADER_PREFIX + CLIENT_HEADER): key}
