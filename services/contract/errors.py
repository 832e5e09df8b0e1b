"""Domain errors that know their gRPC status. Domain code raises these (it never imports grpc);
the error interceptor in services.platform.interceptors turns them into context.abort(...)."""

from __future__ import annotations


class RecserveError(Exception):
    """Base class. `code` is the name of a grpc.StatusCode member."""

    code = "INTERNAL"


class InvalidArgument(RecserveError):
    code = "INVALID_ARGUMENT"


class NotFound(RecserveError):
    code = "NOT_FOUND"


class Unavailable(RecserveError):
    code = "UNAVAILABLE"


class DeadlineExceeded(Unavailable):
    """A dependency did not answer in time (callers degrade as for Unavailable)."""

    code = "DEADLINE_EXCEEDED"


class ResourceExhausted(RecserveError):
    """A request over a configured per-request bound (k, ids, events, candidates per call)."""

    code = "RESOURCE_EXHAUSTED"


def over_limit(what: str, got: int, limit: int, env_var: str) -> ResourceExhausted:
    """The error for `got` > `limit`, naming the bound and the variable that sets it."""
    return ResourceExhausted(f"{what}: {got} exceeds the limit of {limit} (set by {env_var})")


def check_limit(what: str, got: int, limit: int, env_var: str) -> None:
    """Raise ResourceExhausted when got > limit."""
    if got > limit:
        raise over_limit(what, got, limit, env_var)


class FailedPrecondition(RecserveError):
    code = "FAILED_PRECONDITION"


VERSIONS_SERVED = "versions served: "


class VersionNotServed(FailedPrecondition):
    """A request pinned to a bundle version this service does not hold (docs/bundle.md, "One
    version per request"). The message ends with the versions it serves, so a gRPC client can
    read them back from the status details (`served_versions`) and retry on one of them."""

    def __init__(self, wanted: str, served: tuple[str, ...]) -> None:
        self.wanted = wanted
        self.served = served
        held = ",".join(served)
        super().__init__(f"bundle version {wanted!r} is not held; {VERSIONS_SERVED}{held}")


class WrongVersion(Unavailable):
    """Client side of VersionNotServed: the backend does not serve the bundle version the
    request is pinned to; `served` are the versions it does serve (current first). The backend
    answered, so it is healthy (no breaker failure, no retry of the same call); the gateway
    retries the whole request on one of `served` (services.gateway.pipeline)."""

    def __init__(self, message: str, served: tuple[str, ...]) -> None:
        super().__init__(message)
        self.served = served


def served_versions(details: str) -> tuple[str, ...] | None:
    """The versions a VersionNotServed message names; None when `details` is not one."""
    head, sep, tail = details.rpartition(VERSIONS_SERVED)
    if not sep or "is not held" not in head:
        return None
    return tuple(v for v in tail.strip().split(",") if v)


class ConfigError(RecserveError):
    """Invalid configuration at start-up: the process exits with a clear message."""


class BundleError(RecserveError):
    """An artifact bundle is missing, corrupt (checksum mismatch) or of the wrong schema."""

    code = "FAILED_PRECONDITION"
