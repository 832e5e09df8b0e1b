"""The gRPC-client stages against real stand-in servers on port 0: answers are converted to
domain types, and a backend that is down, slow or rejecting maps to the right domain error."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from recserve.v1 import common_pb2, ranking_pb2, ranking_pb2_grpc, uservalue_pb2, uservalue_pb2_grpc
from services.contract.errors import InvalidArgument, Unavailable
from services.contract.features import FeatureSpec
from services.contract.types import UserState
from services.gateway.config import Backend, GatewaySettings
from services.gateway.stages import DeadlineExceeded
from services.gateway.stages.remote import RemoteRanking, RemoteUserValue, connect
from services.launcher import free_port
from services.platform.convert import user_value_from_proto
from services.platform.server import create_server

USER = UserState("u1", True, 1, np.zeros(3, np.int64), np.array([5, 2, 0], np.int64))


class StandInRanking(ranking_pb2_grpc.RankingServiceServicer):
    """p_positive = index / 100, p_interact = 1 - index / 100; sleeps `delay` seconds; rejects
    index 999."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen_history: list[int] = []
        self.seen_events: tuple[list[int], list[int]] = ([], [])
        self.seen_rate_top_k: list[int] = []

    async def Rank(self, request, context):
        await asyncio.sleep(self.delay)
        if 999 in request.item_indices:
            raise InvalidArgument("item index 999 out of range")
        self.seen_history = list(request.user.history)
        self.seen_events = (list(request.user.history_times), list(request.user.history_kinds))
        self.seen_rate_top_k.append(request.rate_top_k)
        p = [i / 100 for i in request.item_indices]
        return ranking_pb2.RankResponse(
            p_positive=p, rating=[1 + 4 * x for x in p], p_interact=[1 - x for x in p]
        )


async def _with_ranking(servicer, scenario, deadline_s: float = 1.0):
    def register(server):
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(servicer, server)

    server, port = await create_server(register, service_names=["recserve.v1.RankingService"])
    stage = RemoteRanking(Backend("ranking", f"127.0.0.1:{port}", deadline_s))
    try:
        return await scenario(stage)
    finally:
        await stage.close()
        await server.stop(None)


def test_rank_over_grpc_returns_aligned_domain_scores():
    servicer = StandInRanking()
    scores = asyncio.run(
        _with_ranking(servicer, lambda stage: stage.rank(USER, np.array([7, 3], np.int64)))
    )
    assert scores.p_positive.tolist() == pytest.approx([0.07, 0.03])
    assert scores.p_interact.tolist() == pytest.approx([0.93, 0.97])
    assert scores.rating.dtype == np.float32
    assert servicer.seen_history == [5, 2], "history travels without its 0 padding"


def test_rank_over_grpc_sends_the_history_events():
    servicer = StandInRanking()
    user = dataclasses.replace(
        USER,
        history_times=np.array([1_700_000_000, 1_600_000_000, 0], np.int64),
        history_kinds=np.array([4, 10, 0], np.int64),
    )
    asyncio.run(_with_ranking(servicer, lambda stage: stage.rank(user, np.array([7], np.int64))))
    assert servicer.seen_events == ([1_700_000_000, 1_600_000_000], [4, 10])


def test_rank_over_grpc_sends_rate_top_k_and_keeps_nan_ratings():
    """rate_top_k travels in the request; NaN (a candidate not rated) comes back as NaN."""

    class TopOne(StandInRanking):
        async def Rank(self, request, context):
            response = await super().Rank(request, context)
            response.rating[1] = response.p_positive[1] = float("nan")
            return response

    servicer = TopOne()

    async def scenario(stage):
        return [
            await stage.rank(USER, np.array([7, 3], np.int64), 1),
            await stage.rank(USER, np.array([7, 3], np.int64)),
        ]

    rated, _ = asyncio.run(_with_ranking(servicer, scenario))
    assert servicer.seen_rate_top_k == [1, 0]
    assert rated.rating[0] == pytest.approx(1.28) and np.isnan(rated.rating[1])
    assert np.isnan(rated.p_positive[1]) and not np.isnan(rated.p_interact).any()


def test_slow_backend_is_deadline_exceeded():
    with pytest.raises(DeadlineExceeded):
        asyncio.run(
            _with_ranking(
                StandInRanking(delay=1.0),
                lambda stage: stage.rank(USER, np.array([1], np.int64)),
                deadline_s=0.05,
            )
        )


def test_backend_rejecting_input_is_invalid_argument():
    with pytest.raises(InvalidArgument, match="999"):
        asyncio.run(
            _with_ranking(StandInRanking(), lambda stage: stage.rank(USER, np.array([999])))
        )


def test_backend_that_is_down_is_unavailable():
    async def scenario():
        stage = RemoteRanking(Backend("ranking", f"127.0.0.1:{free_port()}", 1.0))
        try:
            await stage.rank(USER, np.array([1], np.int64))
        finally:
            await stage.close()

    with pytest.raises(Unavailable) as caught:
        asyncio.run(scenario())
    assert not isinstance(caught.value, DeadlineExceeded)


def test_connect_gives_each_backend_its_own_channel_and_deadline():
    env = {"RECSERVE_RANKING_ADDR": "127.0.0.1:6001", "RECSERVE_RANKING_DEADLINE_MS": "40"}

    async def scenario():
        stages = connect(GatewaySettings.from_env(env), FeatureSpec())
        await stages.close()
        return [stages.features, stages.retrieval, stages.ranking, stages.uservalue]

    clients = asyncio.run(scenario())
    assert len({id(c.channel) for c in clients}) == 4
    assert clients[2].deadline_s == pytest.approx(0.04)


def test_value_scores_come_back_with_segment_names():
    msg = common_pb2.UserValue(user_id="u", p_active=0.5, segment=common_pb2.SEGMENT_AT_RISK)
    assert user_value_from_proto(msg).segment == "AT_RISK"


class StandInUserValue(uservalue_pb2_grpc.UserValueServiceServicer):
    """Records each request; answers every user as ACTIVE."""

    def __init__(self) -> None:
        self.requests: list[uservalue_pb2.ScoreRequest] = []

    async def Score(self, request, context):
        self.requests.append(request)
        values = [
            common_pb2.UserValue(user_id=u, p_active=0.5, segment=common_pb2.SEGMENT_ACTIVE)
            for u in request.user_ids
        ]
        return uservalue_pb2.ScoreResponse(values=values, bundle_version="v")


def test_user_value_client_sends_the_day_and_the_activity():
    servicer = StandInUserValue()

    async def scenario():
        def register(server):
            uservalue_pb2_grpc.add_UserValueServiceServicer_to_server(servicer, server)

        server, port = await create_server(register, service_names=["recserve.v1.UserValueService"])
        stage = RemoteUserValue(Backend("uservalue", f"127.0.0.1:{port}", 1.0))
        activity = {"u1": (np.array([19_990, 20_000]), np.array([1.0, 2.0], np.float32))}
        try:
            now = await stage.score(["u1"], activity)
            then = await stage.score(["u1"], activity, as_of_day=20_000)
            return now, then
        finally:
            await stage.close()
            await server.stop(None)

    now, then = asyncio.run(scenario())
    assert [v.segment for v in (*now, *then)] == ["ACTIVE", "ACTIVE"]
    assert [r.as_of_day for r in servicer.requests] == [0, 20_000]  # 0: the service's clock
    assert list(servicer.requests[1].activities[0].days) == [19_990, 20_000]


def test_a_user_is_converted_once_for_retrieval_and_ranking():
    from services.gateway.stages.remote import _UserMessages

    build = _UserMessages(size=2)
    first = build(USER)
    assert build(USER) is first
    other = UserState("u2", True, 2, np.zeros(3, np.int64), np.array([7, 0, 0], np.int64))
    assert build(other) is not first and build(other).user_id == "u2"
    assert list(build(other).history) == [7]
    again = build(UserState("u1", True, 1, np.zeros(3, np.int64), np.array([5, 2, 0], np.int64)))
    assert again is not first and again == first  # an equal user is a new object: built anew
