"""All five real servers (feature, retrieval, ranking, uservalue, gateway) in split mode, each
on its own loopback port, called over gRPC: the same answers as the embedded gateway."""

from __future__ import annotations

import pytest

from recserve.client import FeedbackEvent, RecserveClient
from services.platform.healthcheck import check


@pytest.fixture(scope="module")
def split(split_stack: dict[str, str]):
    with RecserveClient(split_stack["gateway"], timeout=30) as client:
        yield client


def test_every_server_reports_serving(split_stack):
    assert {name: check(target) for name, target in split_stack.items()} == dict.fromkeys(
        split_stack, True
    )


def test_split_and_embedded_recommend_the_same_items(split, embedded_gateway, known_users):
    with RecserveClient(embedded_gateway, timeout=30) as embedded:
        one = embedded.recommend(known_users[3], k=10)
    other = split.recommend(known_users[3], k=10)
    assert [i.item_id for i in other.items] == [i.item_id for i in one.items]
    assert [i.score for i in other.items] == pytest.approx([i.score for i in one.items], abs=1e-5)
    assert list(other.fallbacks) == [] and other.HasField("user_value")
    assert other.user_value.segment == one.user_value.segment


def test_split_cold_start_and_feedback_round_trip(split, known_users):
    assert split.recommend("nobody-at-all", k=5).cold_start
    user = known_users[4]
    top = split.recommend(user, k=5).items[0].item_id
    assert split.feedback([FeedbackEvent(user, top, "click")]).accepted == 1
    assert top not in {i.item_id for i in split.recommend(user, k=5).items}


def test_split_serves_every_rpc(split, known_users):
    reply = split.recommend(known_users[0], k=3)
    items = [i.item_id for i in reply.items]
    assert len(split.predict_ratings(known_users[0], items).ratings) == 3
    assert len(split.similar_items(items[0], k=3).items) == 3
    assert len(split.recommend_tags(known_users[0], k=2).tags) == 2
    assert len(split.score_users(known_users[:3]).values) == 3
