"""The event behind each history entry (its time and kind token) in both feature stores: base
state, live events, recent items, hand-over to a new bundle, export / snapshots (older ones
without times and kinds load with them unknown) and Redis lists written by older code."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from services.contract.bundle import Bundle
from services.contract.features import EVENT_TOKENS, event_tokens
from services.contract.types import Event, EventKind
from services.feature import store as store_module
from services.feature.config import DurabilitySettings
from services.feature.eventlog import LogSettings
from services.feature.redis_store import RedisFeatureStore, redis_client
from services.feature.snapshot import SNAPSHOT_NAME, open_durable_store, read_snapshot
from services.feature.store import InMemoryFeatureStore
from tests.redis_server import RedisServer
from tests.redis_server import redis_server as redis_server  # the fixture

TS = 2_000_000_000
RATING_5 = EVENT_TOKENS.index("rating 5/5")
PURCHASE = EVENT_TOKENS.index("purchase")
VIEW = EVENT_TOKENS.index("view")
CLICK = EVENT_TOKENS.index("click")


@pytest.fixture(scope="module")
def user_id(bundle: Bundle) -> str:
    log = pq.read_table(bundle.path("interactions.parquet"), columns=["user_id"]).to_pandas()
    return str(log["user_id"].value_counts().index[0])


def live_events(store, user_id: str) -> tuple[list[Event], list[str]]:
    """A click, a 5-star rating, an event on an unknown item, a purchase (in that order)."""
    items = [str(i) for i in store.catalog.vocab.ids[:3]]
    return [
        Event(user_id, items[0], EventKind.CLICK, TS),
        Event(user_id, items[1], EventKind.RATING, TS + 10, rating=5.0),
        Event(user_id, "no-such-item", EventKind.VIEW, TS + 15),
        Event(user_id, items[2], EventKind.PURCHASE, TS + 20, value=9.5),
    ], items


def check_live(state, before, store, items: list[str]) -> None:
    """The three known items in front, most recent first, with their times and tokens; the
    base entries shifted behind them with theirs."""
    h = state.history.size
    assert state.history_times.dtype == state.history_kinds.dtype == np.int64
    assert state.history_times.shape == state.history_kinds.shape == (h,)
    np.testing.assert_array_equal(state.history[:3], store.catalog.indices(items[::-1]))
    assert state.history_times[:3].tolist() == [TS + 20, TS + 10, TS]
    assert state.history_kinds[:3].tolist() == [PURCHASE, RATING_5, CLICK]
    np.testing.assert_array_equal(state.history_times[3:], before.history_times[: h - 3])
    np.testing.assert_array_equal(state.history_kinds[3:], before.history_kinds[: h - 3])


def test_base_state_times_and_kinds_come_from_the_bundle_log(bundle, user_id):
    store = InMemoryFeatureStore.from_bundle(bundle)
    log = pq.read_table(bundle.path("interactions.parquet")).to_pandas()
    events = log[log["user_id"] == user_id].sort_values("timestamp", kind="stable")[::-1]
    known = store.catalog.indices(events["item_id"].astype(str).tolist()) > 0
    h = store.spec.history_len
    types = events["event_type"].fillna("") if "event_type" in events else [""] * len(events)
    kinds = event_tokens(types, events["rating"].astype(float), bundle.dataset.rating_scale)

    state = store.get_user(user_id)

    assert state.history_times.tolist() == events["timestamp"][known].tolist()[:h]
    np.testing.assert_array_equal(state.history_kinds, kinds[known][:h])
    assert (state.history_kinds > 0).all() and (state.history_times > 0).all()
    unknown = store.get_user("nobody-at-all")
    assert unknown.history_times.tolist() == unknown.history_kinds.tolist() == [0] * h


def test_live_events_record_their_time_and_kind(bundle, user_id):
    store = InMemoryFeatureStore.from_bundle(bundle)
    before = store.get_user(user_id)
    events, items = live_events(store, user_id)

    store.apply_events(events)

    check_live(store.get_user(user_id), before, store, items)


def test_recent_items_are_views_made_now(bundle, user_id):
    store = InMemoryFeatureStore.from_bundle(bundle)
    stored = store.get_user(user_id)
    recent = [str(i) for i in store.catalog.vocab.ids[5:7]]
    start = int(time.time())

    state = store.get_user(user_id, recent)

    n = len(recent)
    assert state.history_kinds[:n].tolist() == [VIEW] * n
    assert (state.history_times[:n] >= start).all()
    assert (state.history_times[:n] <= time.time() + 1).all()
    h = state.history.size
    np.testing.assert_array_equal(state.history_times[n:], stored.history_times[: h - n])
    np.testing.assert_array_equal(state.history_kinds[n:], stored.history_kinds[: h - n])
    assert store.get_user(user_id).history_kinds.tolist() == stored.history_kinds.tolist()


def test_adopt_live_state_drops_the_events_of_items_gone(bundle, user_id, monkeypatch):
    old = InMemoryFeatureStore.from_bundle(bundle)
    events, _ = live_events(old, user_id)
    old.apply_events(events)
    kept = old.get_user(user_id)
    new = InMemoryFeatureStore.from_bundle(bundle)
    gone = int(kept.history[1])  # the rated item: as if the new bundle had no such item
    rows = store_module._index_table(old.catalog, new.catalog)
    rows[gone] = 0
    monkeypatch.setattr(store_module, "_index_table", lambda *_: rows)

    new.adopt_live_state(old)

    state = new.get_user(user_id)
    keep = kept.history != gone
    h = state.history.size
    n = int(keep[kept.history > 0].sum())
    np.testing.assert_array_equal(state.history[:n], kept.history[keep][:n])
    np.testing.assert_array_equal(state.history_times[:n], kept.history_times[keep][:n])
    np.testing.assert_array_equal(state.history_kinds[:n], kept.history_kinds[keep][:n])
    assert state.history_kinds[:2].tolist() == [PURCHASE, CLICK]
    assert state.history_times.shape == (h,)


def test_export_import_keeps_them_and_an_older_export_is_unknown(bundle, user_id):
    store = InMemoryFeatureStore.from_bundle(bundle)
    before = store.get_user(user_id)
    events, items = live_events(store, user_id)
    store.apply_events(events)
    state, position = store.export_state()
    other = InMemoryFeatureStore.from_bundle(bundle)

    other.import_state(state, position)
    check_live(other.get_user(user_id), before, other, items)

    other.import_state({u: arrays[:5] for u, arrays in state.items()}, position)
    old = other.get_user(user_id)
    np.testing.assert_array_equal(old.history, store.get_user(user_id).history)
    assert not old.history_times.any() and not old.history_kinds.any()
    assert old.history_times.shape == old.history.shape


def durable(directory: Path) -> DurabilitySettings:
    return DurabilitySettings(LogSettings(directory), snapshot_every=0)


def test_log_replay_and_snapshot_restore_keep_them(bundle, user_id, tmp_path):
    store, durability = open_durable_store(bundle, durable(tmp_path))
    before = store.get_user(user_id)
    events, items = live_events(store, user_id)
    for event in events:
        store.apply_events([event])
    durability.log.close()  # as after a crash: the log only

    replayed, again = open_durable_store(bundle, durable(tmp_path))
    check_live(replayed.get_user(user_id), before, replayed, items)
    again.close()  # writes the snapshot
    state, _ = read_snapshot(tmp_path, bundle.version)
    assert state[user_id][6][:3].tolist() == [PURCHASE, RATING_5, CLICK]

    restored, closing = open_durable_store(bundle, durable(tmp_path))
    try:
        check_live(restored.get_user(user_id), before, restored, items)
    finally:
        closing.close()


def test_an_older_snapshot_loads_with_unknown_times_and_kinds(bundle, user_id, tmp_path):
    store, durability = open_durable_store(bundle, durable(tmp_path))
    events, _ = live_events(store, user_id)
    store.apply_events(events)
    live = store.get_user(user_id)
    durability.close()
    path = tmp_path / SNAPSHOT_NAME
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files if not k.startswith("history_")}
    assert "history" in arrays and len(arrays) == len(np.load(path).files) - 2
    np.savez(path, **arrays)  # as written before times and kinds were kept

    restored, closing = open_durable_store(bundle, durable(tmp_path))
    try:
        state = restored.get_user(user_id)
        np.testing.assert_array_equal(state.history, live.history)
        assert (
            state.history_times.tolist() == state.history_kinds.tolist() == [0] * live.history.size
        )
    finally:
        closing.close()


def test_redis_store_records_them_and_reads_older_list_entries(
    bundle, user_id, redis_server: RedisServer
):
    prefix = f"t-events-{time.monotonic_ns()}"
    store = RedisFeatureStore.from_bundle(
        bundle, client=redis_client(redis_server.url, timeout_s=2.0), prefix=prefix
    )
    memory = InMemoryFeatureStore.from_bundle(bundle)
    before = store.get_user(user_id)
    np.testing.assert_array_equal(before.history_times, memory.get_user(user_id).history_times)
    np.testing.assert_array_equal(before.history_kinds, memory.get_user(user_id).history_kinds)
    events, items = live_events(store, user_id)

    store.apply_events(events)

    check_live(store.get_user(user_id), before, store, items)
    replica = RedisFeatureStore.from_bundle(
        bundle, client=redis_client(redis_server.url, timeout_s=2.0), prefix=prefix
    )
    check_live(replica.get_user(user_id), before, replica, items)

    # an entry written by older code: "<stream id> <day> <value> <item>", no time or kind
    item = str(store.catalog.vocab.ids[9])
    with redis_server.client() as client:
        client.rpush(store.user_key(user_id), f"{TS * 1000}-0 {TS // 86_400} 0.0 {item}")
    state = replica.get_user(user_id)
    assert state.history[0] == store.catalog.index(item)
    assert (state.history_times[0], state.history_kinds[0]) == (0, 0)
    assert state.history_kinds[1:4].tolist() == [PURCHASE, RATING_5, CLICK]
