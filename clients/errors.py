"""The client's exceptions, one tree (under maas's own root, maas.errors.MaasError):

    ClientError                 anything that went wrong talking to maas
    ├── BadURL                  a URL the client cannot use (also a ValueError)
    ├── ServerUnavailable       nothing answers at that URL (refused, timed out, DNS), or a
    │                           model's Python stub is dead until the server reloads it
    │   └── Overloaded          the server is at capacity and refused the request (the front
    │       │                   door's requests in flight, a step's queue full, or its wait
    │       │                   too long: gRPC UNAVAILABLE, HTTP 503)
    │       └── OverQuota       this client key sent more than its rate at the front door
    │                           (maas.tenants: HTTP 429, gRPC RESOURCE_EXHAUSTED)
    ├── ModelNotReady           the server answers but the model is missing or not loaded
    ├── InvalidInput            the server refused the request: bad image, bad TOP_K, shape,
    │                           datatype, batch too large (gRPC INVALID_ARGUMENT, HTTP 400)
    ├── NotAuthorized           the API needs a key this request did not carry, or the
    │                           wrong one (Triton's restricted APIs, the front door's
    │                           tenants: HTTP 401/403, gRPC UNAUTHENTICATED; never retried)
    └── InferenceFailed         the server accepted the request and failed on it

Each keeps the server's message and, in `status`, its status code as tritonclient reported it.
"""

from __future__ import annotations

from maas.runtime.errors import MaasError


class ClientError(MaasError):
    def __init__(self, message: str, status: str | None = None):
        super().__init__(message)
        self.status = status


class BadURL(ClientError, ValueError):
    pass


class ServerUnavailable(ClientError):
    pass


class Overloaded(ServerUnavailable):
    pass


class OverQuota(Overloaded):
    pass


class ModelNotReady(ClientError):
    pass


class InvalidInput(ClientError):
    pass


class NotAuthorized(ClientError):
    pass


class InferenceFailed(ClientError):
    pass


def from_triton(error: Exception) -> ClientError:
    """Map a tritonclient/transport exception to our tree."""
    from tritonclient.utils import InferenceServerException

    if isinstance(error, ClientError):
        return error
    if isinstance(error, (ConnectionError, TimeoutError, OSError)):
        return ServerUnavailable(f"cannot reach the server: {error}")
    if not isinstance(error, InferenceServerException):
        return InferenceFailed(f"{type(error).__name__}: {error}")
    status = str(error.status() or "")
    message = error.message() or str(error)
    lowered = message.lower()
    if "is restricted, expecting header" in lowered:
        # Triton answers a missing or wrong key with HTTP 403 or gRPC UNAVAILABLE; no retry
        # will bring the key.
        return NotAuthorized(message, status)
    if "UNAUTHENTICATED" in status or status == "401":  # the front door's tenants
        return NotAuthorized(message, status)
    if status == "429" or ("RESOURCE_EXHAUSTED" in status and "over quota" in lowered):
        return OverQuota(f"over quota, retry later: {message}", status)
    if "INVALID_ARGUMENT" in status or status == "400":
        # Triton reports an unknown model as a bad argument over HTTP; say what it means.
        if "unknown model" in lowered or "is not found" in lowered:
            return ModelNotReady(message, status)
        return InvalidInput(message, status)
    # Admission control: the front door's bound on requests in flight (maas.balancer), a
    # step's queue full or waited on too long (maas.build.admission); a refusal, not a step
    # that failed on one inside (INTERNAL: nothing says it is safe again).
    bound = any(s in lowered for s in ("overloaded, retry", "exceeds maximum queue size",
                                       "request timeout expired"))  # fmt: skip
    if bound and status in ("503", "StatusCode.UNAVAILABLE"):
        said = lowered.startswith("overloaded, retry later")  # the door's says it already
        return Overloaded(message if said else f"overloaded, retry later: {message}", status)
    if "UNAVAILABLE" in status or "DEADLINE_EXCEEDED" in status or "failed to connect" in lowered:
        return ServerUnavailable(message, status)
    if "stub process" in lowered and "is not healthy" in lowered:
        # A step's Python process died; maas serve's watchdog reloads it within seconds
        # (maas.health): worth retrying, like a server that is briefly away.
        return ServerUnavailable(message, status)
    if "NOT_FOUND" in status or status == "404" or "not ready" in lowered:
        return ModelNotReady(message, status)
    return InferenceFailed(message, status)
