"""UserValueService over gRPC around the real scorer (real server on port 0, real bundle)."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from recserve.v1 import common_pb2, uservalue_pb2, uservalue_pb2_grpc
from services.contract.vocab import Vocabulary
from services.platform.server import create_server
from services.uservalue.config import SERVICE_NAME

scorer_module = pytest.importorskip("services.uservalue.scorer")


@pytest.fixture(scope="module")
def scorer(bundle):
    return scorer_module.UserValueScorer.from_bundle(bundle)


def call(scorer, bundle, request, max_users: int = 5):
    from services.uservalue.servicer import register

    async def scenario():
        server, port = await create_server(
            register(scorer, bundle.version, max_users), service_names=[SERVICE_NAME]
        )
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await uservalue_pb2_grpc.UserValueServiceStub(channel).Score(request)
        finally:
            await server.stop(None)

    return asyncio.run(scenario())


def status_of(scorer, bundle, request) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        call(scorer, bundle, request)
    return caught.value.code()


def test_scores_align_with_user_ids(scorer, bundle):
    known = Vocabulary.load(bundle.path("user_ids.npy")).ids[0]
    response = call(scorer, bundle, uservalue_pb2.ScoreRequest(user_ids=[known, "brand-new"]))
    assert [v.user_id for v in response.values] == [known, "brand-new"]
    assert response.bundle_version == bundle.version
    for value in response.values:
        assert 0.0 <= value.p_active <= 1.0
        assert value.segment != common_pb2.SEGMENT_UNSPECIFIED
        assert value.horizon_weeks > 0


def test_live_activity_is_accepted(scorer, bundle):
    activity = uservalue_pb2.UserActivity(user_id="live", days=[10_000, 10_010], values=[5, 7])
    request = uservalue_pb2.ScoreRequest(user_ids=["live"], activities=[activity])
    assert call(scorer, bundle, request).values[0].user_id == "live"


def test_empty_request_is_invalid(scorer, bundle):
    request = uservalue_pb2.ScoreRequest()
    assert status_of(scorer, bundle, request) == grpc.StatusCode.INVALID_ARGUMENT


def test_too_many_users_is_resource_exhausted(scorer, bundle):
    request = uservalue_pb2.ScoreRequest(user_ids=[f"u{i}" for i in range(6)])
    assert status_of(scorer, bundle, request) == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_misaligned_activity_is_invalid(scorer, bundle):
    activity = uservalue_pb2.UserActivity(user_id="x", days=[1, 2], values=[1.0])
    request = uservalue_pb2.ScoreRequest(user_ids=["x"], activities=[activity])
    assert status_of(scorer, bundle, request) == grpc.StatusCode.INVALID_ARGUMENT
