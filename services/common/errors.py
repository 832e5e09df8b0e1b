"""Domain errors that know their gRPC status. Domain code raises these (it never imports grpc);
the error interceptor in services.common.interceptors turns them into context.abort(...)."""

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


class ConfigError(RecserveError):
    """Invalid configuration at start-up: the process exits with a clear message."""


class BundleError(RecserveError):
    """An artifact bundle is missing, corrupt (checksum mismatch) or of the wrong schema."""

    code = "FAILED_PRECONDITION"
