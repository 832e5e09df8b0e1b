"""Cross-cutting RPC behaviour for every grpc.aio server: error mapping and access logging.

Domain code raises services.common.errors.RecserveError subclasses; this interceptor turns
them into `context.abort(grpc.StatusCode[exc.code], message)`. Anything else becomes INTERNAL
with a generic message: the stack trace goes to the log, never to the client.

Bytes that do not decode as the method's request message would get grpc.aio's own answer,
UNKNOWN "Unexpected <class 'DecodeError'>: ..." (the handler never runs). The interceptor wraps
the request deserializer so they get INVALID_ARGUMENT naming the message type instead.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from services.common.errors import RecserveError

log = logging.getLogger("recserve.rpc")

INTERNAL_MESSAGE = "internal error"


def _status_of(context: grpc.aio.ServicerContext) -> grpc.StatusCode:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code
    return grpc.StatusCode.OK if code in (None, 0) else grpc.StatusCode.UNKNOWN


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


def _wrap_unary(method: str, inner: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    is_coroutine = inspect.iscoroutinefunction(inner)

    async def handler(request: Any, context: grpc.aio.ServicerContext) -> Any:
        start = time.perf_counter()
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
            if log.isEnabledFor(logging.DEBUG):
                log.debug(
                    "rpc method=%s status=%s latency_ms=%.3f",
                    method,
                    _status_of(context).name,
                    (time.perf_counter() - start) * 1e3,
                )

    return handler


class ErrorInterceptor(grpc.aio.ServerInterceptor):
    """Maps domain errors to gRPC statuses and logs method/status/latency at DEBUG.

    Only unary-unary handlers are wrapped (every recserve RPC is unary); streaming handlers
    such as health Watch and reflection pass through untouched.
    """

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        return grpc.unary_unary_rpc_method_handler(
            _wrap_unary(handler_call_details.method, handler.unary_unary),
            request_deserializer=_tolerant(handler.request_deserializer),
            response_serializer=handler.response_serializer,
        )
