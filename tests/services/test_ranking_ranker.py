"""OnnxRanker and RankingService on a real bundle."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from recserve.v1 import ranking_pb2, ranking_pb2_grpc
from services.common import convert
from services.common.bundle import Bundle
from services.common.errors import InvalidArgument
from services.common.onnx import CPU, CUDA
from services.common.server import create_server
from services.feature.store import InMemoryFeatureStore
from services.ranking.config import SERVICE_NAME
from services.ranking.ranker import OnnxRanker
from services.ranking.servicer import register


@pytest.fixture(scope="module")
def bundle(tiny_bundle) -> Bundle:
    return Bundle.load(tiny_bundle)


@pytest.fixture(scope="module")
def ranker(bundle) -> OnnxRanker:
    return OnnxRanker.from_bundle(bundle, prefer_gpu=True, max_candidates=100)


@pytest.fixture(scope="module")
def user(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    return store.get_user(store.users.ids[0])


def test_scores_align_with_candidates_and_stay_in_range(ranker, user):
    items = np.arange(1, 51, dtype=np.int64)
    scores = ranker.rank(user, items)
    assert scores.p_positive.shape == scores.rating.shape == (50,)
    assert scores.p_positive.dtype == np.float32
    assert ((scores.p_positive >= 0) & (scores.p_positive <= 1)).all()
    assert ((scores.rating >= 1) & (scores.rating <= 5)).all()


def test_order_of_candidates_is_kept(ranker, user):
    items = np.arange(1, 21, dtype=np.int64)
    forward = ranker.rank(user, items)
    backward = ranker.rank(user, items[::-1].copy())
    np.testing.assert_allclose(backward.p_positive, forward.p_positive[::-1], rtol=1e-5)


def test_provider_is_reported(ranker):
    assert ranker.provider in (CUDA, CPU)


def test_empty_candidates_give_empty_scores(ranker, user):
    assert ranker.rank(user, np.zeros(0, dtype=np.int64)).p_positive.size == 0


@pytest.mark.parametrize("bad", [-1, 10**9])
def test_out_of_range_index_is_invalid(ranker, user, bad):
    with pytest.raises(InvalidArgument, match="out of range"):
        ranker.rank(user, np.array([1, bad], dtype=np.int64))


def test_too_many_candidates_is_invalid(ranker, user):
    with pytest.raises(InvalidArgument, match="at most 100"):
        ranker.rank(user, np.ones(101, dtype=np.int64))


def _rank_over_grpc(ranker, request):
    async def scenario():
        server, port = await create_server(register(ranker), service_names=[SERVICE_NAME])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await ranking_pb2_grpc.RankingServiceStub(channel).Rank(request)
        finally:
            await server.stop(None)

    return asyncio.run(scenario())


def test_rank_rpc_reports_scores_and_provider(ranker, user):
    request = ranking_pb2.RankRequest(
        user=convert.user_state_to_proto(user), item_indices=[3, 1, 2]
    )
    response = _rank_over_grpc(ranker, request)
    expected = ranker.rank(user, np.array([3, 1, 2]))
    np.testing.assert_allclose(response.p_positive, expected.p_positive, rtol=1e-6)
    assert response.execution_provider == ranker.provider
    assert response.bundle_version == ranker.bundle_version


def test_rank_rpc_bad_user_index_is_invalid_argument(ranker, user):
    msg = convert.user_state_to_proto(user)
    msg.user_index = 10**9
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _rank_over_grpc(ranker, ranking_pb2.RankRequest(user=msg, item_indices=[1]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
