"""create_server: health, reflection, error mapping (real grpc.aio server on port 0)."""

from __future__ import annotations

import asyncio
import contextlib
import sys

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from recserve.v1 import feature_pb2, feature_pb2_grpc
from services.contract.errors import ConfigError, NotFound
from services.feature.servicer import register
from services.platform.server import (
    create_server,
    event_loop_name,
    loop_factory,
    run_loop,
    set_not_serving,
)

SERVICE = "recserve.v1.FeatureService"


class ScriptedStore:
    """A FeatureStore double whose get_user raises what the test asks for."""

    bundle_version = "test"

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get_user(self, user_id, recent_items=()):
        raise self.error

    def get_users(self, user_ids):
        raise self.error

    def get_items(self, item_ids):
        raise self.error

    def apply_events(self, events):
        raise self.error


@contextlib.asynccontextmanager
async def serving(store):
    server, port = await create_server(register(store), port=0, service_names=[SERVICE])
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield server, channel
    finally:
        await server.stop(None)


async def _health(channel, service: str) -> int:
    stub = health_pb2_grpc.HealthStub(channel)
    return (await stub.Check(health_pb2.HealthCheckRequest(service=service))).status


def test_health_reports_serving_for_server_and_service():
    async def scenario():
        async with serving(ScriptedStore(RuntimeError())) as (_, channel):
            return await _health(channel, ""), await _health(channel, SERVICE)

    assert asyncio.run(scenario()) == (health_pb2.HealthCheckResponse.SERVING,) * 2


def test_set_not_serving_flips_health():
    async def scenario():
        async with serving(ScriptedStore(RuntimeError())) as (server, channel):
            await set_not_serving(server)
            return await _health(channel, SERVICE)

    assert asyncio.run(scenario()) == health_pb2.HealthCheckResponse.NOT_SERVING


def test_reflection_lists_the_service():
    async def scenario():
        async with serving(ScriptedStore(RuntimeError())) as (_, channel):
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for response in stub.ServerReflectionInfo(iter([request])):
                return {s.name for s in response.list_services_response.service}

    names = asyncio.run(scenario())
    assert SERVICE in names and "grpc.health.v1.Health" in names


def _call_get_user(error: Exception) -> grpc.aio.AioRpcError:
    async def scenario():
        async with serving(ScriptedStore(error)) as (_, channel):
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await stub.GetUser(feature_pb2.GetUserRequest(user_id="u"))
            return caught.value

    return asyncio.run(scenario())


def test_domain_error_keeps_its_status_and_message():
    err = _call_get_user(NotFound("unknown user 'u'"))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert err.details() == "unknown user 'u'"


def test_unexpected_exception_is_internal_without_details(caplog):
    err = _call_get_user(RuntimeError("secret path /etc/x"))
    assert err.code() == grpc.StatusCode.INTERNAL
    assert "secret" not in err.details()
    assert "secret path" in caplog.text  # logged server-side with the trace


@pytest.mark.parametrize(
    ("setting", "expected"), [("asyncio", "asyncio"), ("uvloop", "uvloop"), ("auto", "uvloop")]
)
def test_services_run_on_the_configured_event_loop(setting, expected):
    pytest.importorskip("uvloop")

    async def which() -> str:
        return event_loop_name()

    assert run_loop(which(), {"RECSERVE_EVENT_LOOP": setting}) == expected


def test_event_loop_setting_is_checked(monkeypatch):
    with pytest.raises(ConfigError, match="RECSERVE_EVENT_LOOP"):
        loop_factory({"RECSERVE_EVENT_LOOP": "tokio"})
    monkeypatch.setitem(sys.modules, "uvloop", None)  # not installed
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        loop_factory({"RECSERVE_EVENT_LOOP": "uvloop"})
    assert loop_factory({"RECSERVE_EVENT_LOOP": "auto"}) is asyncio.new_event_loop


def test_a_bad_event_loop_setting_never_starts_main():
    async def main() -> None:
        raise AssertionError("started")

    coroutine = main()
    with pytest.raises(ConfigError, match="RECSERVE_EVENT_LOOP"):
        run_loop(coroutine, {"RECSERVE_EVENT_LOOP": "tokio"})
    assert coroutine.cr_frame is None  # closed: no "never awaited" warning at exit
