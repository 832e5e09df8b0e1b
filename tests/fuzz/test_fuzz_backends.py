"""Random and adversarial requests straight to the four backend services (feature, retrieval,
ranking, uservalue): what a buggy or hostile gateway could send them."""

from __future__ import annotations

import math
from collections.abc import Iterator
from types import SimpleNamespace

import fuzzlib as fz
import grpc
import pytest
from hypothesis import example, given

from recserve.v1 import (
    common_pb2,
    feature_pb2,
    feature_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
    uservalue_pb2,
    uservalue_pb2_grpc,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def stubs(stack) -> Iterator[SimpleNamespace]:
    channels = {name: grpc.insecure_channel(t) for name, t in stack.targets.items()}
    yield SimpleNamespace(
        feature=feature_pb2_grpc.FeatureServiceStub(channels["feature"]),
        retrieval=retrieval_pb2_grpc.RetrievalServiceStub(channels["retrieval"]),
        ranking=ranking_pb2_grpc.RankingServiceStub(channels["ranking"]),
        uservalue=uservalue_pb2_grpc.UserValueServiceStub(channels["uservalue"]),
    )
    for channel in channels.values():
        channel.close()


def _valid_calls(s: SimpleNamespace) -> None:
    t = fz.CALL_TIMEOUT_S
    user = s.feature.GetUser(feature_pb2.GetUserRequest(user_id="1"), timeout=t)
    assert user.known
    s.feature.GetUsers(feature_pb2.GetUsersRequest(user_ids=["1", "2"]), timeout=t)
    s.feature.GetItems(feature_pb2.GetItemsRequest(item_ids=["1"]), timeout=t)
    event = common_pb2.Event(user_id="1", item_id="1", type=common_pb2.EVENT_TYPE_VIEW)
    s.feature.ApplyEvents(feature_pb2.ApplyEventsRequest(events=[event]), timeout=t)
    found = s.retrieval.Retrieve(retrieval_pb2.RetrieveRequest(user=user, k=10), timeout=t)
    assert len(found.item_indices) == 10
    s.retrieval.RetrieveSimilar(retrieval_pb2.RetrieveSimilarRequest(item_id="1", k=5), timeout=t)
    s.retrieval.TagAffinities(retrieval_pb2.TagAffinitiesRequest(user=user, k=3), timeout=t)
    ranked = s.ranking.Rank(
        ranking_pb2.RankRequest(user=user, item_indices=found.item_indices), timeout=t
    )
    assert len(ranked.p_interact) == 10
    s.uservalue.Score(uservalue_pb2.ScoreRequest(user_ids=["1"]), timeout=t)


@pytest.fixture(scope="module")
def baseline(stubs) -> dict[str, int]:
    _valid_calls(stubs)
    _valid_calls(stubs)
    return fz.process_resources()


def _finite(values) -> bool:
    return all(math.isfinite(v) for v in values)


@given(fz.GET_USER)
@fz.FUZZ
def test_get_user(stubs, baseline, request_msg) -> None:
    reply = fz.assert_clean(stubs.feature.GetUser, request_msg)
    if reply is not None:
        assert reply.user_id == request_msg.user_id


@given(fz.GET_USERS)
@fz.FUZZ
def test_get_users(stubs, baseline, request_msg) -> None:
    reply = fz.assert_clean(stubs.feature.GetUsers, request_msg)
    if reply is not None:
        assert [u.user_id for u in reply.users] == list(request_msg.user_ids)


@given(fz.GET_ITEMS)
@fz.FUZZ
def test_get_items(stubs, baseline, request_msg) -> None:
    reply = fz.assert_clean(stubs.feature.GetItems, request_msg)
    if reply is not None:
        assert [i.item_id for i in reply.items] == list(request_msg.item_ids)


@given(fz.APPLY_EVENTS)
@fz.FUZZ
def test_apply_events(stubs, baseline, request_msg) -> None:
    reply = fz.assert_clean(stubs.feature.ApplyEvents, request_msg)
    if reply is not None:
        assert reply.accepted == len(request_msg.events)


@given(fz.RETRIEVE)
@fz.FUZZ
def test_retrieve(stubs, baseline, request_msg) -> None:
    reply = fz.assert_clean(stubs.retrieval.Retrieve, request_msg)
    if reply is not None:
        assert len(reply.item_indices) == len(reply.scores) <= request_msg.k
        assert _finite(reply.scores)


@given(fz.RETRIEVE_SIMILAR)
@fz.FUZZ
def test_retrieve_similar(stubs, baseline, request_msg) -> None:
    reply = fz.assert_clean(stubs.retrieval.RetrieveSimilar, request_msg)
    if reply is not None:
        assert len(reply.item_indices) == len(reply.scores) <= request_msg.k


@given(fz.TAG_AFFINITIES)
@fz.FUZZ
@example(  # found by this test: out-of-range history indexed the tag matrix (INTERNAL)
    retrieval_pb2.TagAffinitiesRequest(
        user=common_pb2.UserFeatures(user_id="0", history=[2**63 - 1]), k=1
    )
)
def test_tag_affinities(stubs, baseline, request_msg) -> None:
    reply = fz.assert_clean(stubs.retrieval.TagAffinities, request_msg)
    if reply is not None:
        assert len(reply.tags) == len(reply.affinities) <= request_msg.k
        assert _finite(reply.affinities)


@given(fz.RANK)
@fz.FUZZ
def test_rank(stubs, baseline, request_msg) -> None:
    reply = fz.assert_clean(stubs.ranking.Rank, request_msg)
    if reply is not None:
        n = len(request_msg.item_indices)
        assert len(reply.p_positive) == len(reply.rating) == len(reply.p_interact) == n
        assert _finite(reply.p_interact) and _finite(reply.rating)


@given(fz.SCORE)
@fz.FUZZ
def test_score(stubs, baseline, request_msg) -> None:
    reply = fz.assert_clean(stubs.uservalue.Score, request_msg)
    if reply is not None:
        assert [v.user_id for v in reply.values] == list(request_msg.user_ids)
        assert all(_finite((v.p_active, v.expected_value)) for v in reply.values)


def _over(s: SimpleNamespace):
    user = common_pb2.UserFeatures(user_id="1")
    event = common_pb2.Event(user_id="1", item_id="1", type=1)
    yield (
        s.feature.GetUser,
        feature_pb2.GetUserRequest(user_id="1", recent_items=["1"] * 41),
        ("RECSERVE_FEATURE_MAX_IDS"),
    )
    yield (
        s.feature.GetUsers,
        feature_pb2.GetUsersRequest(user_ids=["1"] * 41),
        ("RECSERVE_FEATURE_MAX_IDS"),
    )
    yield (
        s.feature.GetItems,
        feature_pb2.GetItemsRequest(item_ids=["1"] * 41),
        ("RECSERVE_FEATURE_MAX_IDS"),
    )
    yield (
        s.feature.ApplyEvents,
        feature_pb2.ApplyEventsRequest(events=[event] * 41),
        ("RECSERVE_FEATURE_MAX_EVENTS"),
    )
    yield (
        s.retrieval.Retrieve,
        retrieval_pb2.RetrieveRequest(user=user, k=201),
        ("RECSERVE_RETRIEVAL_MAX_K"),
    )
    yield (
        s.retrieval.RetrieveSimilar,
        retrieval_pb2.RetrieveSimilarRequest(item_id="1", k=201),
        ("RECSERVE_RETRIEVAL_MAX_K"),
    )
    yield (
        s.ranking.Rank,
        ranking_pb2.RankRequest(user=user, item_indices=[1] * 201),
        ("RECSERVE_RANKING_MAX_CANDIDATES"),
    )
    yield (
        s.uservalue.Score,
        uservalue_pb2.ScoreRequest(user_ids=["1"] * 41),
        ("RECSERVE_USERVALUE_MAX_USERS"),
    )


def test_per_request_bounds_are_resource_exhausted(stubs, baseline) -> None:
    for method, request_msg, env_var in _over(stubs):
        code, _, details = fz.status_of(method, request_msg)
        assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (method, code, details)
        assert env_var in details


def test_zz_still_serves_and_no_leak(stubs, baseline) -> None:
    _valid_calls(stubs)
    fz.assert_no_leak(baseline, fz.process_resources())
