"""Request ids and the sampled access log of the shared server interceptor."""

from __future__ import annotations

import asyncio
import logging

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from recserve.v1 import feature_pb2, feature_pb2_grpc
from services.contract.errors import NotFound
from services.feature.servicer import register
from services.platform.interceptors import ErrorInterceptor
from services.platform.logging import REQUEST_ID, JsonFormatter
from services.platform.server import create_server

SERVICE = "recserve.v1.FeatureService"


class MissingUserStore:
    """get_user logs one line (so the request id shows up there) and answers NOT_FOUND."""

    bundle_version = "test"

    def get_user(self, user_id, recent_items=()):
        logging.getLogger("test.store").info("lookup %s", user_id)
        raise NotFound(f"unknown user {user_id!r}")


async def _get_user(metadata=()) -> tuple[grpc.aio.AioRpcError, dict[str, str]]:
    server, port = await create_server(
        register(MissingUserStore()), port=0, service_names=[SERVICE]
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            call = stub.GetUser(feature_pb2.GetUserRequest(user_id="u1"), metadata=metadata)
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await call
            return err.value, dict(await call.trailing_metadata() or ())
    finally:
        await server.stop(None)


async def _health_checks(n: int) -> None:
    server, port = await create_server(
        register(MissingUserStore()), port=0, service_names=[SERVICE]
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            for _ in range(n):
                await stub.Check(health_pb2.HealthCheckRequest(service=""))
    finally:
        await server.stop(None)


def _access(caplog) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "recserve.access"]


def test_caller_request_id_is_logged_and_returned(caplog, monkeypatch) -> None:
    monkeypatch.setenv("RECSERVE_ACCESS_LOG_SAMPLE", "0")
    caplog.set_level(logging.INFO)
    err, trailers = asyncio.run(_get_user(metadata=(("x-request-id", "req-42"),)))
    assert err.code() is grpc.StatusCode.NOT_FOUND
    assert trailers["x-request-id"] == "req-42"
    store_line = next(r for r in caplog.records if r.name == "test.store")
    assert '"request_id": "req-42"' in JsonFormatter("feature").format(store_line)
    (access,) = _access(caplog)  # a failed call is logged even with sampling off
    assert access.status == "NOT_FOUND" and access.method.endswith("/GetUser")
    assert access.latency_ms >= 0 and access.sampled is False
    assert REQUEST_ID.get() == ""  # reset after the call


@pytest.mark.parametrize("bad", ["", "x" * 65])
def test_insane_request_ids_are_replaced(bad: str) -> None:
    _, trailers = asyncio.run(_get_user(metadata=(("x-request-id", bad),)))
    rid = trailers["x-request-id"]
    assert rid != bad and len(rid) == 16 and int(rid, 16) >= 0


@pytest.mark.parametrize(("rate", "expected"), [("0", 0), ("1", 5)])
def test_successful_calls_are_sampled(caplog, monkeypatch, rate: str, expected: int) -> None:
    monkeypatch.setenv("RECSERVE_ACCESS_LOG_SAMPLE", rate)
    caplog.set_level(logging.INFO)
    asyncio.run(_health_checks(5))
    records = _access(caplog)
    assert len(records) == expected
    assert all(r.status == "OK" and r.sampled for r in records)


def test_access_log_sample_rate_is_validated(monkeypatch) -> None:
    monkeypatch.setenv("RECSERVE_ACCESS_LOG_SAMPLE", "0.25")
    assert ErrorInterceptor().access_sample == 0.25
    monkeypatch.setenv("RECSERVE_ACCESS_LOG_SAMPLE", "2")
    with pytest.raises(Exception, match="RECSERVE_ACCESS_LOG_SAMPLE"):
        ErrorInterceptor()


class _CallDetails(grpc.HandlerCallDetails):
    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata = ()


def test_the_wrapper_is_built_once_per_method():
    """grpc.aio asks the interceptor on every call: the wrapped handler (and its bound metric
    children) is made once per method and reused; a different handler gets a new wrapper."""

    async def echo(request, context):
        return request

    first = grpc.unary_unary_rpc_method_handler(echo)
    interceptor = ErrorInterceptor(access_sample=0.0)
    details = _CallDetails("/recserve.v1.Test/Echo")

    async def continuation(_details):
        return first

    async def intercept():
        return await interceptor.intercept_service(continuation, details)

    one, two = asyncio.run(intercept()), asyncio.run(intercept())
    assert one is two and one is not first
    first = grpc.unary_unary_rpc_method_handler(echo)  # e.g. a re-registered service
    assert asyncio.run(intercept()) is not one


def test_rpcs_in_flight_counts_the_served_calls():
    """The wrapper counts the unary calls being served (services.platform.loop_batching reads
    it on uvloop): two concurrent calls see 2, a call alone 1, none after; a failing call is
    uncounted too."""
    from services.platform.interceptors import _wrap_unary, rpcs_in_flight

    seen: list[int] = []
    release = asyncio.Event()

    async def slow(request, context):
        seen.append(rpcs_in_flight())
        await release.wait()
        return request

    async def failing(request, context):
        seen.append(rpcs_in_flight())
        raise ValueError("boom")

    class _Context:
        def invocation_metadata(self):
            return ()

        def set_trailing_metadata(self, _):
            pass

        def code(self):
            return None

        def peer(self):
            return "test"

        async def abort(self, code, message):
            raise grpc.aio.AbortError()

    async def scenario():
        handler = _wrap_unary("/recserve.v1.Test/Slow", slow, 0.0)
        calls = [asyncio.ensure_future(handler(b"x", _Context())) for _ in range(2)]
        await asyncio.sleep(0)
        release.set()
        await asyncio.gather(*calls)
        with pytest.raises(grpc.aio.AbortError):
            await _wrap_unary("/recserve.v1.Test/Fail", failing, 0.0)(b"x", _Context())
        return rpcs_in_flight()

    assert rpcs_in_flight() == 0
    assert asyncio.run(scenario()) == 0
    assert seen == [1, 2, 1]
