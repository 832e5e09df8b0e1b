"""Optional OpenTelemetry tracing: one Recommend = one trace, a span per stage and per RPC.

Off by default, and then free: no interceptor is installed and `span()` hands back one shared
no-op context manager. Turn it on per process:

    RECSERVE_TRACING        off (default) | otlp | console
    RECSERVE_TRACE_SAMPLE   1.0   share of new traces kept (a caller's sampling decision wins)
    OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_EXPORTER_OTLP_HEADERS, ...  the OTLP exporter's own
                            standard variables (default http://localhost:4317, gRPC)

The trace context travels in gRPC metadata as W3C `traceparent` / `tracestate`: the gateway's
channels inject it (TracingClientInterceptor), every server extracts it
(TracingServerInterceptor), so the backends' spans join the gateway's trace.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

from services.platform.env import Env, env_choice, env_float
from services.platform.interceptors import split_method, status_of

_TRACER_NAME = "recserve"
_NOOP = contextlib.nullcontext()
_provider: TracerProvider | None = None


@dataclass(frozen=True)
class TracingSettings:
    exporter: str  # off | otlp | console
    sample: float

    @property
    def enabled(self) -> bool:
        return self.exporter != "off"

    @classmethod
    def from_env(cls, env: Env | None = None) -> TracingSettings:
        return cls(
            exporter=env_choice("RECSERVE_TRACING", "off", ("off", "otlp", "console"), env),
            sample=env_float("RECSERVE_TRACE_SAMPLE", 1.0, min_value=0.0, max_value=1.0, env=env),
        )


def setup_tracing(
    service: str, settings: TracingSettings, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Install the process's tracer provider (None when off). `exporter` overrides the
    configured one (tests pass an in-memory exporter)."""
    global _provider
    if not settings.enabled and exporter is None:
        return None
    provider = TracerProvider(
        resource=Resource.create({SERVICE_NAME: f"recserve-{service}"}),
        sampler=ParentBased(TraceIdRatioBased(settings.sample)),
    )
    if exporter is not None:
        provider.add_span_processor(SimpleSpanProcessor(exporter))
    elif settings.exporter == "console":
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _provider = provider
    return provider


def shutdown_tracing() -> None:
    """Flush and stop the provider (at process exit)."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


def enabled() -> bool:
    return _provider is not None


def tracer() -> trace.Tracer:
    assert _provider is not None, "tracing is off"
    return _provider.get_tracer(_TRACER_NAME)


def span(name: str, **attributes: Any) -> contextlib.AbstractContextManager[Any]:
    """A child span of the current one; a shared no-op when tracing is off."""
    if _provider is None:
        return _NOOP
    return tracer().start_as_current_span(name, attributes=attributes or None)


class TracingServerInterceptor(grpc.aio.ServerInterceptor):
    """A SERVER span per unary RPC, child of the caller's trace when it sent one."""

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None or _provider is None:
            return handler
        method = handler_call_details.method
        inner = handler.unary_unary
        is_coroutine = inspect.iscoroutinefunction(inner)

        async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
            carrier = {k: v for k, v in context.invocation_metadata() or () if isinstance(v, str)}
            parent = propagate.extract(carrier)
            service, name = split_method(method)
            with tracer().start_as_current_span(
                f"{service}/{name}",
                context=parent,
                kind=SpanKind.SERVER,
                attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
            ) as current:
                try:
                    result = inner(request, context)
                    return await result if is_coroutine else result
                finally:
                    code = status_of(context)
                    if code is not grpc.StatusCode.OK:
                        current.set_attribute("rpc.grpc.status_code", code.value[0])
                        current.set_status(Status(StatusCode.ERROR, code.name))

        return grpc.unary_unary_rpc_method_handler(
            traced,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


class TracingClientInterceptor(grpc.aio.UnaryUnaryClientInterceptor):
    """A CLIENT span per outgoing call, with the trace context injected into its metadata."""

    async def intercept_unary_unary(
        self,
        continuation: Callable[[grpc.aio.ClientCallDetails, Any], Any],
        client_call_details: grpc.aio.ClientCallDetails,
        request: Any,
    ) -> Any:
        if _provider is None:
            return await continuation(client_call_details, request)
        method = client_call_details.method
        method = method.decode() if isinstance(method, bytes) else method
        with tracer().start_as_current_span(
            method.lstrip("/"), kind=SpanKind.CLIENT, attributes={"rpc.system": "grpc"}
        ) as current:
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            metadata = [*(client_call_details.metadata or ()), *carrier.items()]
            details = grpc.aio.ClientCallDetails(
                method=client_call_details.method,
                timeout=client_call_details.timeout,
                metadata=grpc.aio.Metadata(*metadata),
                credentials=client_call_details.credentials,
                wait_for_ready=client_call_details.wait_for_ready,
            )
            call = await continuation(details, request)
            code = await call.code()
            if code is not grpc.StatusCode.OK:
                current.set_attribute("rpc.grpc.status_code", code.value[0])
                current.set_status(Status(StatusCode.ERROR, code.name))
            return call


def server_interceptors() -> list[grpc.aio.ServerInterceptor]:
    return [TracingServerInterceptor()] if _provider is not None else []


def client_interceptors() -> list[grpc.aio.ClientInterceptor]:
    return [TracingClientInterceptor()] if _provider is not None else []


@contextlib.contextmanager
def traced_process(service: str, env: Env | None = None) -> Iterator[TracerProvider | None]:
    """setup_tracing from the environment for a service's lifetime, flushed at exit."""
    provider = setup_tracing(service, TracingSettings.from_env(env))
    try:
        yield provider
    finally:
        shutdown_tracing()
