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
    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(RecserveError):
    code = "FAILED_PRECONDITION"


class ConfigError(RecserveError):
    """Invalid configuration at start-up: the process exits with a clear message."""


class BundleError(RecserveError):
    """An artifact bundle is missing, corrupt (checksum mismatch) or of the wrong schema."""

    code = "FAILED_PRECONDITION"
