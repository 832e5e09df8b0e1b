"""Random and adversarial requests to every public Gateway RPC (split mode, real backends).

Every answer must be OK or a client-error status (never INTERNAL, UNKNOWN or a deadline), an OK
answer must honour the request, and the process must not leak threads or file descriptors."""

from __future__ import annotations

from collections.abc import Iterator

import fuzzlib as fz
import grpc
import pytest
from hypothesis import given

from recserve.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def gateway(stack) -> Iterator[gateway_pb2_grpc.GatewayStub]:
    with grpc.insecure_channel(stack.targets["gateway"]) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def _valid_calls(gw: gateway_pb2_grpc.GatewayStub) -> None:
    timeout = fz.CALL_TIMEOUT_S
    reply = gw.Recommend(gateway_pb2.RecommendRequest(user_id="1", k=5), timeout=timeout)
    assert len(reply.items) == 5 and not reply.fallbacks
    predict = gateway_pb2.PredictRatingsRequest(user_id="1", item_ids=["1"])
    gw.PredictRatings(predict, timeout=timeout)
    gw.SimilarItems(gateway_pb2.SimilarItemsRequest(item_id="1", k=3), timeout=timeout)
    gw.RecommendTags(gateway_pb2.RecommendTagsRequest(user_id="1", k=3), timeout=timeout)
    gw.ScoreUsers(gateway_pb2.ScoreUsersRequest(user_ids=["1", "2"]), timeout=timeout)
    event = common_pb2.Event(user_id="1", item_id="1", type=common_pb2.EVENT_TYPE_VIEW)
    gw.Feedback(gateway_pb2.FeedbackRequest(events=[event]), timeout=timeout)


@pytest.fixture(scope="module")
def baseline(gateway) -> dict[str, int]:
    _valid_calls(gateway)  # channels, pools and lazy ONNX set-up exist before we count
    _valid_calls(gateway)
    return fz.process_resources()


@given(fz.RECOMMEND)
@fz.FUZZ
def test_recommend(gateway, baseline, request_msg) -> None:
    reply = fz.assert_clean(gateway.Recommend, request_msg)
    if reply is not None:
        assert 1 <= request_msg.k <= fz.GATEWAY_MAX_K
        assert len(reply.items) <= request_msg.k
        assert len({item.item_id for item in reply.items}) == len(reply.items)
        assert not reply.fallbacks, reply.fallbacks  # backends never refuse what we forward
        excluded = set(request_msg.filters.exclude_items)
        assert not excluded & {item.item_id for item in reply.items}


@given(fz.PREDICT_RATINGS)
@fz.FUZZ
def test_predict_ratings(gateway, baseline, request_msg) -> None:
    reply = fz.assert_clean(gateway.PredictRatings, request_msg)
    if reply is not None:
        assert [r.item_id for r in reply.ratings] == list(request_msg.item_ids)


@given(fz.SIMILAR_ITEMS)
@fz.FUZZ
def test_similar_items(gateway, baseline, request_msg) -> None:
    reply = fz.assert_clean(gateway.SimilarItems, request_msg)
    if reply is not None:
        assert len(reply.items) <= request_msg.k
        assert request_msg.item_id not in {item.item_id for item in reply.items}


@given(fz.RECOMMEND_TAGS)
@fz.FUZZ
def test_recommend_tags(gateway, baseline, request_msg) -> None:
    reply = fz.assert_clean(gateway.RecommendTags, request_msg)
    if reply is not None:
        assert len(reply.tags) <= request_msg.k


@given(fz.SCORE_USERS)
@fz.FUZZ
def test_score_users(gateway, baseline, request_msg) -> None:
    reply = fz.assert_clean(gateway.ScoreUsers, request_msg)
    if reply is not None:
        assert [v.user_id for v in reply.values] == list(request_msg.user_ids)


@given(fz.FEEDBACK)
@fz.FUZZ
def test_feedback(gateway, baseline, request_msg) -> None:
    reply = fz.assert_clean(gateway.Feedback, request_msg)
    if reply is not None:
        assert reply.accepted == len(request_msg.events)


@pytest.mark.parametrize(
    ("method", "request_msg", "env_var"),
    [
        ("Recommend", gateway_pb2.RecommendRequest(user_id="1", k=51), "RECSERVE_MAX_K"),
        ("SimilarItems", gateway_pb2.SimilarItemsRequest(item_id="1", k=10**6), "RECSERVE_MAX_K"),
        ("RecommendTags", gateway_pb2.RecommendTagsRequest(user_id="1", k=51), "RECSERVE_MAX_K"),
        (
            "PredictRatings",
            gateway_pb2.PredictRatingsRequest(user_id="1", item_ids=["1"] * 41),
            "RECSERVE_MAX_BATCH",
        ),
        ("ScoreUsers", gateway_pb2.ScoreUsersRequest(user_ids=["1"] * 41), "RECSERVE_MAX_BATCH"),
        (
            "Recommend",
            gateway_pb2.RecommendRequest(
                user_id="1", k=5, context=gateway_pb2.RecommendContext(recent_items=["1"] * 41)
            ),
            "RECSERVE_MAX_BATCH",
        ),
        (
            "Feedback",
            gateway_pb2.FeedbackRequest(
                events=[common_pb2.Event(user_id="1", item_id="1", type=1)] * 41
            ),
            "RECSERVE_MAX_BATCH",
        ),
    ],
)
def test_per_request_bounds_are_resource_exhausted(gateway, method, request_msg, env_var) -> None:
    code, _, details = fz.status_of(getattr(gateway, method), request_msg)
    assert code is grpc.StatusCode.RESOURCE_EXHAUSTED, (code, details)
    assert env_var in details


def test_zz_still_serves_and_no_leak(gateway, baseline) -> None:
    _valid_calls(gateway)
    fz.assert_no_leak(baseline, fz.process_resources())
