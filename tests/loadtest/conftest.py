"""A fake gateway on port 0 whose behaviour each test sets: answer at once, stall for a window,
fail some kinds. It runs on the test's own event loop next to the load generator."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

import grpc
import pytest

from recserve.v1 import gateway_pb2, gateway_pb2_grpc
from services.platform.server import create_server


@dataclass
class Behaviour:
    stall_after_s: float | None = None  # after the first request, stall answers ...
    stall_s: float = 0.0  # ... for this long (all of them wait until the stall ends)
    hang_feedback: bool = False  # never answer Feedback (the client's deadline ends it)
    predict_status: grpc.StatusCode | None = None  # answer PredictRatings with this error


class FakeGateway(gateway_pb2_grpc.GatewayServicer):
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.first: float | None = None
        self.calls = 0

    async def _maybe_stall(self) -> None:
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.calls += 1
        if self.first is None:
            self.first = now
        b = self.behaviour
        if b.stall_after_s is not None:
            start = self.first + b.stall_after_s
            end = start + b.stall_s
            if start <= now < end:
                await asyncio.sleep(end - now)

    async def Recommend(self, request, context):
        await self._maybe_stall()
        return gateway_pb2.RecommendResponse(model_version="fake")

    async def Feedback(self, request, context):
        await self._maybe_stall()
        if self.behaviour.hang_feedback:
            await asyncio.sleep(3600)
        return gateway_pb2.FeedbackResponse(accepted=len(request.events))

    async def PredictRatings(self, request, context):
        await self._maybe_stall()
        if self.behaviour.predict_status is not None:
            await context.abort(self.behaviour.predict_status, "fake error")
        return gateway_pb2.PredictRatingsResponse(model_version="fake")


@pytest.fixture
def fake_gateway():
    """async with fake_gateway(stall_after_s=0.5, stall_s=0.5) as (target, servicer): ...
    (keyword arguments: the fields of Behaviour)."""

    @contextlib.asynccontextmanager
    async def start(**behaviour):
        servicer = FakeGateway(Behaviour(**behaviour))

        def register(server: grpc.aio.Server) -> None:
            gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)

        server, port = await create_server(register, port=0, service_names=["recserve.v1.Gateway"])
        try:
            yield f"127.0.0.1:{port}", servicer
        finally:
            await server.stop(0)

    return start
