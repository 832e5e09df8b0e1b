"""The public API over gRPC: an embedded gateway (every stage in-process) on the tiny bundle."""

from __future__ import annotations

import grpc
import pytest

from recserve.client import FeedbackEvent, RecserveClient
from services.contract.errors import Unavailable
from services.contract.features import SECONDS_PER_DAY
from services.gateway.catalog import GatewayCatalog


@pytest.fixture(scope="module")
def client(embedded_gateway: str):
    with RecserveClient(embedded_gateway, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def catalog(bundle) -> GatewayCatalog:
    return GatewayCatalog.from_bundle(bundle)


def status_of(call, *args, **kwargs) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as caught:
        call(*args, **kwargs)
    return caught.value.code()


def test_recommend_returns_k_distinct_titled_items_sorted_by_score(client, known_users, bundle):
    reply = client.recommend(known_users[0], k=10)
    ids = [item.item_id for item in reply.items]
    assert len(ids) == len(set(ids)) == 10
    assert all(item.title and item.tags for item in reply.items)
    scores = [item.score for item in reply.items]
    assert scores == sorted(scores, reverse=True)
    assert all(1.0 <= item.predicted_rating <= 5.0 for item in reply.items)
    # Ordered by P(interact); the rating model's P(rating >= 4) rides along.
    assert all(item.stage_scores.interaction == item.score for item in reply.items)
    assert all(0.0 < item.stage_scores.ranking <= 1.0 for item in reply.items)
    assert reply.model_version == bundle.version
    assert reply.HasField("user_value") and reply.user_value.user_id == known_users[0]
    assert not reply.cold_start and list(reply.fallbacks) == []


def test_exclude_seen_never_returns_a_seen_item(client, known_users, bundle):
    from services.feature.store import InMemoryFeatureStore

    user = InMemoryFeatureStore.from_bundle(bundle).get_user(known_users[1])
    seen = set(GatewayCatalog.from_bundle(bundle).ids[user.seen].tolist())
    assert seen, "the tiny bundle's users have training history"
    reply = client.recommend(known_users[1], k=20, exclude_seen=True)
    assert not seen & {item.item_id for item in reply.items}


def test_include_and_exclude_tags_are_respected(client, known_users, catalog):
    tag = catalog.tag_names[0]
    included = client.recommend(known_users[0], k=5, include_tags=[tag])
    assert included.items and all(tag in item.tags for item in included.items)
    excluded = client.recommend(known_users[0], k=5, exclude_tags=[tag])
    assert excluded.items and all(tag not in item.tags for item in excluded.items)


def test_unknown_user_gets_popular_items_as_cold_start(client, catalog):
    reply = client.recommend("nobody-we-know", k=5)
    assert reply.cold_start
    assert [item.item_id for item in reply.items] == catalog.ids[catalog.popular(5)].tolist()


def test_feedback_then_recommend_reflects_the_new_history(client, known_users):
    user = known_users[2]
    top = client.recommend(user, k=3).items[0].item_id
    accepted = client.feedback([FeedbackEvent(user, top, "rating", rating=5.0)]).accepted
    assert accepted == 1
    assert top not in {item.item_id for item in client.recommend(user, k=3).items}


def test_activity_today_makes_a_known_user_more_active(client, known_users, catalog, bundle):
    """Issue 16: user value is scored now, so 15 events today raise P(active). With the clock
    frozen at the end of the training data the same events lowered it (0.21 -> 0.19)."""
    user = known_users[3]
    data_end_s = int(bundle.manifest["value"]["as_of_day"]) * SECONDS_PER_DAY
    then = client.score_users([user], time_s=data_end_s).values[0]
    assert client.recommend(user, k=3, time_s=data_end_s).user_value == then
    before = client.score_users([user]).values[0]
    assert client.recommend(user, k=3).user_value == before
    assert before.p_active != then.p_active  # decades later, the same history scores apart

    items = catalog.ids[catalog.popular(15)].tolist()
    events = [FeedbackEvent(user, item, "view") for item in items]  # timestamp 0: now
    assert client.feedback(events).accepted == 15
    after = client.score_users([user]).values[0]
    assert after.p_active > before.p_active
    assert client.recommend(user, k=3).user_value.p_active == after.p_active


def test_predict_ratings_are_between_1_and_5(client, known_users, catalog):
    items = catalog.ids[1:6].tolist()
    reply = client.predict_ratings(known_users[0], items)
    assert [r.item_id for r in reply.ratings] == items
    assert all(1.0 <= r.rating <= 5.0 and 0.0 <= r.p_positive <= 1.0 for r in reply.ratings)
    assert not reply.cold_start
    assert client.predict_ratings("nobody-we-know", items[:1]).cold_start


def test_predict_ratings_of_an_unknown_item_is_not_found_naming_it(client, known_users):
    with pytest.raises(grpc.RpcError) as caught:
        client.predict_ratings(known_users[0], ["no-such-item"])
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND
    assert "no-such-item" in caught.value.details()


def test_similar_items_recommend_tags_and_score_users(client, known_users, catalog):
    item = catalog.ids[catalog.popular(1)[0]]
    similar = client.similar_items(item, k=5)
    assert len(similar.items) == 5 and item not in {i.item_id for i in similar.items}
    tags = client.recommend_tags(known_users[0], k=3)
    assert len(tags.tags) == 3 and all(t.tag in catalog.tag_names for t in tags.tags)
    values = client.score_users([known_users[0], "nobody-we-know"])
    assert [v.user_id for v in values.values] == [known_users[0], "nobody-we-know"]
    assert all(0.0 <= v.p_active <= 1.0 for v in values.values)


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("recommend", {"user_id": "", "k": 5}),
        ("recommend", {"user_id": "x" * 300, "k": 5}),
        ("recommend", {"user_id": "u", "k": 0}),
        ("recommend", {"user_id": "u", "k": 5, "include_tags": ["no-such-tag"]}),
        ("predict_ratings", {"user_id": "u", "item_ids": []}),
        ("similar_items", {"item_id": "", "k": 5}),
        ("recommend_tags", {"user_id": "u", "k": -1}),
        ("score_users", {"user_ids": []}),
        ("score_users", {"user_ids": ["u"], "time_s": -1}),
        ("recommend", {"user_id": "u", "k": 5, "time_s": 1}),
        ("feedback", {"events": []}),
        ("feedback", {"events": [FeedbackEvent("u", "i", "rating", rating=9.0)]}),
    ],
)
def test_bad_arguments_are_invalid_argument(client, method, kwargs):
    assert status_of(getattr(client, method), **kwargs) == grpc.StatusCode.INVALID_ARGUMENT


def test_k_over_the_limit_is_resource_exhausted(client):
    code = status_of(client.recommend, user_id="u", k=100_000)
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED


class _DownRanking:
    async def rank(self, user, item_indices, rate_top_k=0, query=None):
        raise Unavailable("ranking: injected failure")


def test_ranking_down_degrades_to_retrieval_order(start_embedded, known_users):
    with RecserveClient(start_embedded(ranking=_DownRanking()), timeout=30) as client:
        reply = client.recommend(known_users[0], k=5)
    assert list(reply.fallbacks) == ["ranking_unavailable"]
    retrieval = [item.stage_scores.retrieval for item in reply.items]
    assert len(reply.items) == 5 and retrieval == sorted(retrieval, reverse=True)
