"""Cross-cutting RPC behaviour for every grpc.aio server: error mapping, request ids and
sampled access logs.

Domain code raises services.contract.errors.RecserveError subclasses; this interceptor turns
them into `context.abort(grpc.StatusCode[exc.code], message)`. Anything else becomes INTERNAL
with a generic message: the stack trace goes to the log, never to the client.

Request ids: a caller may send `x-request-id` (printable ASCII, at most 64 characters); otherwise
one is made up. It is on every log line written while serving the call and comes back in the
trailing metadata. Access log (logger "recserve.access"): every failed call, and a sample of the
successful ones (RECSERVE_ACCESS_LOG_SAMPLE, default 0.01; 1 logs all, 0 none).

Bytes that do not decode as the method's request message would get grpc.aio's own answer,
UNKNOWN "Unexpected <class 'DecodeError'>: ..." (the handler never runs). The interceptor wraps
the request deserializer so they get INVALID_ARGUMENT naming the message type instead.
"""

from __future__ import annotations

import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.contract.errors import RecserveError
from services.platform import metrics
from services.platform.env import env_float
from services.platform.logging import REQUEST_ID

log = logging.getLogger("recserve.rpc")
access_log = logging.getLogger("recserve.access")
_random_bits = random.Random().getrandbits  # seeded from os.urandom once, at import
_OK = grpc.StatusCode.OK

INTERNAL_MESSAGE = "internal error"
REQUEST_ID_KEY = "x-request-id"
MAX_REQUEST_ID = 64


class _InFlight:
    """Unary RPCs this process is serving now (every handler ErrorInterceptor wraps)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


_IN_FLIGHT = _InFlight()


def rpcs_in_flight() -> int:
    """Unary RPCs being served by this process now, the caller's own included (0 outside a
    served call: a test or a benchmark calling the code directly)."""
    return _IN_FLIGHT.n


def request_id_of(context: grpc.aio.ServicerContext) -> str:
    """The caller's x-request-id when it is sane, else a new random one: 16 hex digits from the
    process's PRNG (an id only has to be unique enough to find a call's log lines; no
    system call per request, as uuid4's os.urandom would be)."""
    for key, value in context.invocation_metadata() or ():
        if key == REQUEST_ID_KEY and isinstance(value, str):
            if 0 < len(value) <= MAX_REQUEST_ID and value.isascii() and value.isprintable():
                return value
            break
    return f"{_random_bits(64):016x}"


def status_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    """The status a served call ended with (OK when nothing set one)."""
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if code in (None, 0) else grpc.StatusCode.UNKNOWN


def split_method(method: str) -> tuple[str, str]:
    """ "/recserve.v1.Gateway/Recommend" -> ("recserve.v1.Gateway", "Recommend")."""
    service, _, name = method.lstrip("/").rpartition("/")
    return service, name


class _Undecodable:
    """What the wrapped deserializer hands the handler for bytes that are not a valid message."""

    __slots__ = ("reason",)

    def __init__(self, reason: str) -> None:
        self.reason = reason


def _tolerant(deserializer: Callable[[bytes], Any] | None) -> Callable[[bytes], Any] | None:
    if deserializer is None:
        return None
    owner = getattr(deserializer, "__self__", None)  # Message.FromString -> the message class
    descriptor = getattr(owner, "DESCRIPTOR", None)
    name = getattr(descriptor, "full_name", None) or getattr(owner, "__name__", "request")

    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError and friends: the client sent a broken message
            return _Undecodable(f"request is not a valid {name} message")

    return deserialize


def _wrap_unary(
    method: str, inner: Callable[..., Any], access_sample: float
) -> Callable[..., Awaitable[Any]]:
    """The handler of one method, built once per method (ErrorInterceptor caches it): the metric
    children are bound here, so a call costs no label lookup."""
    is_coroutine = inspect.iscoroutinefunction(inner)
    service, name = split_method(method)
    latency = metrics.RPC_LATENCY.labels(service, name)
    counted: dict[grpc.StatusCode, Any] = {}  # status -> bound counter, filled on first use

    def count(status: grpc.StatusCode) -> None:
        child = counted.get(status)
        if child is None:
            child = counted[status] = metrics.RPC_REQUESTS.labels(service, name, status.name)
        child.inc()

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
        request_id = request_id_of(context)
        token = REQUEST_ID.set(request_id)
        context.set_trailing_metadata(((REQUEST_ID_KEY, request_id),))
        _IN_FLIGHT.n += 1  # undone in the finally below, whatever happens in between
        try:
            if isinstance(request, _Undecodable):
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, request.reason)
            result = inner(request, context)
            return await result if is_coroutine else result
        except grpc.aio.AbortError:
            raise  # the servicer aborted on purpose; status already set
        except RecserveError as exc:
            code = grpc.StatusCode[exc.code]
            if code is grpc.StatusCode.INTERNAL:
                log.exception("rpc %s failed", method)
                await context.abort(code, INTERNAL_MESSAGE)
            await context.abort(code, str(exc) or code.name.lower())
        except Exception:
            log.exception("rpc %s failed", method)
            await context.abort(grpc.StatusCode.INTERNAL, INTERNAL_MESSAGE)
        finally:
            status = status_of(context)
            elapsed = time.perf_counter() - start
            count(status)
            latency.observe(elapsed)
            if status is not _OK or (access_sample > 0 and random.random() < access_sample):
                access_log.info(
                    "rpc",
                    extra={
                        "method": method,
                        "status": status.name,
                        "latency_ms": round(elapsed * 1e3, 3),
                        "peer": context.peer(),
                        "sampled": status is _OK,
                    },
                )
            REQUEST_ID.reset(token)
            _IN_FLIGHT.n -= 1

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to gRPC statuses, sets the request id, writes the access log.

    Only unary-unary handlers are wrapped (every recserve RPC is unary); streaming handlers
    such as health Watch and reflection pass through untouched.
    """

    def __init__(self, access_sample: float | None = None) -> None:
        self.access_sample = (
            env_float("RECSERVE_ACCESS_LOG_SAMPLE", 0.01, min_value=0.0, max_value=1.0)
            if access_sample is None
            else access_sample
        )
        # method -> (the handler grpc found, our wrapper of it): grpc.aio asks the interceptor
        # on every call; the wrapper is built once per method, not once per call.
        self._wrapped: dict[str, tuple[grpc.RpcMethodHandler, grpc.RpcMethodHandler]] = {}

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        method = handler_call_details.method
        found = self._wrapped.get(method)
        if found is not None and found[0] is handler:
            return found[1]
        wrapped = grpc.unary_unary_rpc_method_handler(
            _wrap_unary(method, handler.unary_unary, self.access_sample),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
        self._wrapped[method] = (handler, wrapped)
        return wrapped
