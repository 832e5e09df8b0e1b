"""OpenTelemetry tracing: off costs nothing; on, a gateway span and the backend's span share a
trace through the gRPC metadata (W3C traceparent)."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from recserve.v1 import feature_pb2, feature_pb2_grpc
from services.contract.errors import ConfigError, NotFound
from services.feature.servicer import register
from services.platform import tracing
from services.platform.security import aio_channel
from services.platform.server import create_server

SERVICE = "recserve.v1.FeatureService"


class MissingUserStore:
    bundle_version = "test"

    def get_user(self, user_id, recent_items=()):
        with tracing.span("store.lookup", user=user_id):
            raise NotFound(f"unknown user {user_id!r}")


@pytest.fixture
def exporter():
    memory = InMemorySpanExporter()
    tracing.setup_tracing("test", tracing.TracingSettings("console", 1.0), exporter=memory)
    yield memory
    tracing.shutdown_tracing()


def test_off_by_default_installs_nothing(monkeypatch) -> None:
    monkeypatch.delenv("RECSERVE_TRACING", raising=False)
    assert not tracing.TracingSettings.from_env().enabled
    assert tracing.setup_tracing("x", tracing.TracingSettings.from_env()) is None
    assert not tracing.enabled()
    assert tracing.server_interceptors() == [] and tracing.client_interceptors() == []
    assert tracing.span("a") is tracing.span("b")  # one shared no-op context manager
    monkeypatch.setenv("RECSERVE_TRACING", "jaeger")
    with pytest.raises(ConfigError, match="RECSERVE_TRACING"):
        tracing.TracingSettings.from_env()


async def _traced_call() -> grpc.StatusCode:
    server, port = await create_server(
        register(MissingUserStore()), port=0, service_names=[SERVICE]
    )
    try:
        async with aio_channel(f"127.0.0.1:{port}") as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            with tracing.span("gateway.Recommend"):
                try:
                    await stub.GetUser(feature_pb2.GetUserRequest(user_id="u1"), timeout=10)
                except grpc.aio.AioRpcError as exc:
                    return exc.code()
        return grpc.StatusCode.OK
    finally:
        await server.stop(None)


def test_one_trace_across_the_grpc_hop(exporter: InMemorySpanExporter) -> None:
    assert asyncio.run(_traced_call()) is grpc.StatusCode.NOT_FOUND
    spans = {s.name: s for s in exporter.get_finished_spans()}
    root = spans["gateway.Recommend"]
    by_kind = {  # the client and the server span share the method's name
        s.kind: s
        for s in exporter.get_finished_spans()
        if s.name == "recserve.v1.FeatureService/GetUser"
    }
    client, server = by_kind[SpanKind.CLIENT], by_kind[SpanKind.SERVER]
    inner = spans["store.lookup"]
    trace_id = root.context.trace_id
    assert {s.context.trace_id for s in (client, server, inner)} == {trace_id}
    assert client.parent.span_id == root.context.span_id
    assert server.parent.span_id == client.context.span_id  # joined through the metadata
    assert inner.parent.span_id == server.context.span_id
    assert server.attributes["rpc.method"] == "GetUser"
    assert server.status.status_code is StatusCode.ERROR
    assert server.attributes["rpc.grpc.status_code"] == grpc.StatusCode.NOT_FOUND.value[0]
    assert inner.attributes["user"] == "u1"
