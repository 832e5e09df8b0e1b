"""InMemoryFeatureStore semantics on a real bundle."""

from __future__ import annotations

import numpy as np
import pyarrow.parquet as pq
import pytest

from services.contract.errors import InvalidArgument, NotFound
from services.contract.types import Event, EventKind
from services.feature.store import InMemoryFeatureStore

DAY = 86_400


@pytest.fixture
def store(bundle) -> InMemoryFeatureStore:
    return InMemoryFeatureStore.from_bundle(bundle, max_batch=100, max_ids=50)


@pytest.fixture(scope="module")
def log(bundle):
    return pq.read_table(bundle.path("interactions.parquet")).to_pandas()


def _busiest_user(log) -> str:
    return str(log["user_id"].value_counts().index[0])


def _item_ids(store: InMemoryFeatureStore, n: int) -> list[str]:
    return store.catalog.vocab.ids[:n].tolist()


def test_known_user_history_is_most_recent_first(store, log):
    user_id = _busiest_user(log)
    events = log[log["user_id"] == user_id].sort_values("timestamp", kind="stable")
    expected = store.catalog.indices(events["item_id"].tolist()[::-1])
    expected = expected[expected > 0][: store.spec.history_len]

    state = store.get_user(user_id)

    assert state.known and state.user_index == store.users.index(user_id)
    assert state.history.shape == (store.spec.history_len,)
    np.testing.assert_array_equal(state.history[: expected.size], expected)
    assert state.event_count == len(events)


def test_seen_and_activity_cover_the_whole_log(store, log):
    user_id = _busiest_user(log)
    events = log[log["user_id"] == user_id]

    state = store.get_user(user_id)

    expected_seen = np.unique(store.catalog.indices(events["item_id"].tolist()))
    np.testing.assert_array_equal(state.seen, expected_seen[expected_seen > 0])
    np.testing.assert_array_equal(state.activity_days, np.unique(events["timestamp"] // DAY))
    assert state.activity_values.sum() == pytest.approx(events["value"].sum(), rel=1e-5)


def test_known_user_has_encoded_profile(store, log):
    state = store.get_user(_busiest_user(log))
    assert state.profile.shape == (len(store.spec.profile_fields),)
    assert (state.profile > 0).any()


def test_applied_event_is_visible_on_next_get_user(store, log):
    user_id = _busiest_user(log)
    item_id = _item_ids(store, 1)[0]
    before = store.get_user(user_id)

    accepted = store.apply_events([Event(user_id, item_id, EventKind.VIEW, 2_000_000_000)])

    after = store.get_user(user_id)
    assert accepted == 1
    assert after.history[0] == store.catalog.index(item_id)
    np.testing.assert_array_equal(after.history[1:], before.history[:-1])
    assert store.catalog.index(item_id) in after.seen
    assert after.activity_days[-1] == 2_000_000_000 // DAY
    assert after.event_count == before.event_count + 1


def test_state_handed_out_earlier_is_not_changed_by_later_events(store, log):
    user_id = _busiest_user(log)
    before = store.get_user(user_id)
    snapshot = before.history.copy()
    store.apply_events([Event(user_id, _item_ids(store, 1)[0], EventKind.CLICK, 2_000_000_000)])
    np.testing.assert_array_equal(before.history, snapshot)


def test_unknown_user_is_cold_with_zero_profile(store):
    state = store.get_user("nobody-ever")
    assert not state.known and state.user_index == 0
    assert not state.profile.any() and not state.history.any()
    assert state.is_cold and state.event_count == 0


def test_unknown_user_gets_history_from_live_events(store):
    a, b = _item_ids(store, 2)
    store.apply_events(
        [
            Event("newcomer", a, EventKind.VIEW, 2_000_000_000),
            Event("newcomer", b, EventKind.PURCHASE, 2_000_000_100, value=12.5),
        ]
    )
    state = store.get_user("newcomer")
    assert not state.known
    assert state.history[:2].tolist() == [store.catalog.index(b), store.catalog.index(a)]
    # MovieLens has no money: its value model counts engagement, one per event.
    assert not store.dataset.has_money
    assert state.activity_values.tolist() == [pytest.approx(2.0)]


def test_money_datasets_count_only_money_as_value(store):
    """With money, a view makes the day active and adds nothing; a purchase adds its amount
    (what training.value_step.value_view fed the value model)."""
    from dataclasses import replace

    a, b = _item_ids(store, 2)
    original = store.dataset
    store.dataset = replace(original, value_unit="EUR")
    try:
        store.apply_events(
            [
                Event("shopper", a, EventKind.VIEW, 2_000_000_000),
                Event("shopper", b, EventKind.PURCHASE, 2_000_000_100, value=12.5),
                Event("shopper", a, EventKind.VIEW, 2_000_086_400),
            ]
        )
        state = store.get_user("shopper")
    finally:
        store.dataset = original
    assert state.activity_days.size == 2
    assert state.activity_values.tolist() == [pytest.approx(12.5), 0.0]


def test_recent_items_go_first_for_this_call_only(store, log):
    user_id = _busiest_user(log)
    item_id = _item_ids(store, 3)[2]
    stored = store.get_user(user_id)

    with_recent = store.get_user(user_id, recent_items=[item_id, "no-such-item"])

    assert with_recent.history[0] == store.catalog.index(item_id)
    np.testing.assert_array_equal(with_recent.history[1:], stored.history[:-1])
    assert store.catalog.index(item_id) in with_recent.seen
    np.testing.assert_array_equal(store.get_user(user_id).history, stored.history)


def test_event_for_unknown_item_counts_as_activity_only(store):
    store.apply_events([Event("stranger", "no-such-item", EventKind.VIEW, 2_000_000_000)])
    state = store.get_user("stranger")
    assert not state.history.any() and state.seen.size == 0
    assert state.activity_days.tolist() == [2_000_000_000 // DAY]
    assert state.event_count == 1


def test_get_items_returns_catalog_facts(store):
    ids = _item_ids(store, 3)
    infos = store.get_items(ids)
    assert [i.item_id for i in infos] == ids
    assert [i.item_index for i in infos] == [1, 2, 3]
    assert all(i.title for i in infos)


def test_get_items_unknown_id_is_not_found(store):
    with pytest.raises(NotFound, match="no-such-item"):
        store.get_items([*_item_ids(store, 1), "no-such-item"])


def test_invalid_rating_rejects_the_whole_batch(store):
    good = Event("batcher", _item_ids(store, 1)[0], EventKind.VIEW, 2_000_000_000)
    bad = Event("batcher", _item_ids(store, 1)[0], EventKind.RATING, 2_000_000_000, rating=7.0)
    with pytest.raises(InvalidArgument):
        store.apply_events([good, bad])
    assert store.get_user("batcher").event_count == 0


def test_batch_over_limit_is_invalid(store):
    event = Event("u", _item_ids(store, 1)[0], EventKind.VIEW, 2_000_000_000)
    with pytest.raises(InvalidArgument, match="at most 100"):
        store.apply_events([event] * 101)


def test_too_many_ids_and_empty_user_id_are_invalid(store):
    with pytest.raises(InvalidArgument):
        store.get_users([f"u{i}" for i in range(51)])
    with pytest.raises(InvalidArgument):
        store.get_user("")
