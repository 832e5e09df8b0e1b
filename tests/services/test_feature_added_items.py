"""The feature service's registry of items added at runtime: rows, idempotent upserts,
feedback on added items, durability (event log + snapshots) and the Redis backend."""

from __future__ import annotations

import dataclasses
import json
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from services.contract.added_items import NewItem, decode_registry
from services.contract.errors import InvalidArgument, NotFound
from services.contract.types import Event, EventKind
from services.feature.config import DurabilitySettings
from services.feature.eventlog import ITEMS_MARK, LogSettings, decode_items, read_events
from services.feature.redis_store import RedisFeatureStore, redis_client
from services.feature.snapshot import open_durable_store
from services.feature.store import InMemoryFeatureStore
from tests.redis_server import RedisServer
from tests.redis_server import redis_server as redis_server  # the fixture

TS = 900_000_000


def new(item_id: str, title: str = "A brand new film", **kw) -> NewItem:
    return NewItem(item_id, title, ("Drama",), **kw)


def click(user: str, item: str, ts: int = TS) -> Event:
    return Event(user, item, EventKind.CLICK, ts)


def test_rows_follow_the_bundle_and_readds_keep_their_place(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    n = store.catalog.n_items
    known = store.catalog.vocab.ids[0]
    first = store.add_items([new("new-1"), new(str(known)), new("new-2")])
    assert [(e.ordinal, e.row) for e in first] == [(1, n + 1), (2, 0), (3, n + 2)]
    vector = np.arange(1, 5, dtype=np.float32)
    again = store.add_items([new("new-2", "Renamed", embedding=vector), new("new-3")])
    assert [(e.ordinal, e.row) for e in again] == [(3, n + 2), (4, n + 3)]
    assert again[0].item.title == "Renamed"
    # Same text and no embedding (a re-add) keeps the stored vector.
    (kept,) = store.add_items([new("new-2", "Renamed")])
    assert np.array_equal(kept.item.embedding, vector)
    info = store.get_items(["new-2"])[0]
    assert (info.item_index, info.title, info.tags, info.popularity) == (
        n + 2,
        "Renamed",
        ("Drama",),
        0,
    )
    entries, change = store.list_added_items(0, 100)
    assert change == entries[-1].change == 6
    assert [e.item.item_id for e in entries] == ["new-1", str(known), "new-3", "new-2"]
    later, _ = store.list_added_items(entries[1].change, 100)
    assert [e.item.item_id for e in later] == ["new-3", "new-2"]


def test_feedback_on_an_added_item_lands_in_history_and_seen(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    (entry,) = store.add_items([new("fresh")])
    user = str(store.users.ids[0])
    store.apply_events([click(user, "fresh")])
    state = store.get_user(user)
    assert state.history[0] == entry.row and entry.row in state.seen.tolist()
    assert store.unknown_item_events == 0


@pytest.mark.parametrize(
    "items, message",
    [
        ([], "empty"),
        ([NewItem("", "t")], "empty item_id"),
        ([new("x"), new("x")], "twice"),
        ([NewItem("x")], "title, a description or an embedding"),
        ([new("x", row=-1)], "negative row"),
        ([NewItem("x", "t", ("",))], "empty tag"),
    ],
)
def test_bad_batches_are_rejected_whole(bundle, items, message):
    store = InMemoryFeatureStore.from_bundle(bundle)
    with pytest.raises(InvalidArgument, match=message):
        store.add_items(items)
    assert len(store.registry) == 0
    with pytest.raises(NotFound):
        store.get_items(["x"])


def durable(directory: Path, **kw) -> DurabilitySettings:
    log_kw = {k: kw.pop(k) for k in ("segment_bytes",) if k in kw}
    return DurabilitySettings(LogSettings(directory, **log_kw), **kw)


def snapshot_of(store: InMemoryFeatureStore, user: str) -> tuple:
    entries, change = store.list_added_items(0, 1000)
    state = store.get_user(user)
    return [(e.ordinal, e.row, e.item) for e in entries], change, state.history.tolist()


def test_registry_survives_a_crash_and_a_snapshot(bundle, tmp_path):
    settings = durable(tmp_path, snapshot_every=3, segment_bytes=1024, keep_segments=False)
    store, durability = open_durable_store(bundle, settings)
    user = str(store.users.ids[1])
    for i in range(12):  # items, events on them, snapshots in between, segments rotated away
        store.add_items([new(f"n{i}", f"Film {i}"), new(f"m{i}", f"Other {i}")])
        store.apply_events([click(user, f"n{i}", TS + i)])
    store.add_items([new("n3", "Film 3", embedding=np.ones(4, np.float32))])
    live = snapshot_of(store, user)
    assert live[0][0][:2] == (1, store.catalog.n_base_rows)
    durability.log.close()  # crash-like: no final snapshot
    durability.wait()
    assert durability.snapshots >= 1
    # Training reads feedback through read_events: items records are not events.
    assert all(e.item_id.startswith("n") for _, b in read_events(tmp_path) for e in b)

    restored, again = open_durable_store(bundle, settings)
    try:
        assert snapshot_of(restored, user) == live
        restored.add_items([new("after-restart")])
        assert restored.registry.get("after-restart").ordinal == 25
    finally:
        again.close()


def test_registry_outlives_a_new_bundle_version(bundle, tmp_path):
    store, durability = open_durable_store(bundle, durable(tmp_path))
    store.add_items([new("a"), new("b")])
    durability.close()  # snapshot for this bundle version
    other = dataclasses.replace(bundle, manifest={**bundle.manifest, "version": "other"})
    restored, again = open_durable_store(other, durable(tmp_path))
    try:
        assert [e.item.item_id for e in restored.registry.entries()] == ["a", "b"]
        assert restored.get_items(["b"])[0].item_index == restored.catalog.n_base_rows + 1
    finally:
        again.close()


@pytest.fixture
def replicas(bundle, redis_server: RedisServer):
    prefix = f"t-{uuid.uuid4().hex[:12]}"

    def make() -> RedisFeatureStore:
        client = redis_client(redis_server.url, timeout_s=2.0)
        return RedisFeatureStore.from_bundle(bundle, client=client, prefix=prefix)

    return make


def test_redis_replicas_agree_on_ordinals_and_rows(replicas):
    a, b = replicas(), replicas()
    results: dict[str, list] = {}

    def adder(name: str, store: RedisFeatureStore) -> None:
        results[name] = [store.add_items([new(f"{name}-{i}"), new("shared")]) for i in range(10)]

    threads = [threading.Thread(target=adder, args=(n, s)) for n, s in (("a", a), ("b", b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    ids = {e.item.item_id: (e.ordinal, e.row) for r in results.values() for b_ in r for e in b_}
    assert sorted(o for o, _ in ids.values()) == list(range(1, 22))
    for store in (a, b, replicas()):  # a third, fresh replica agrees too
        entries, change = store.list_added_items(0, 1000)
        assert change == 40
        assert {e.item.item_id: (e.ordinal, e.row) for e in entries} == ids
        assert all(row == store.catalog.n_base_rows + o - 1 for o, row in ids.values())


def test_redis_feedback_on_an_item_another_replica_added(replicas):
    a, b = replicas(), replicas()
    vector = np.arange(1, 5, dtype=np.float32)
    (entry,) = a.add_items([new("from-a", embedding=vector)])
    (again,) = a.add_items([new("from-a")])
    assert np.array_equal(again.item.embedding, vector)  # merged in Lua like registry.merged
    user = str(b.users.ids[0])
    b.apply_events([click(user, "from-a")])  # b has not synced: it pulls on the miss
    assert a.get_user(user).history[0] == entry.row == b.get_user(user).history[0]
    assert replicas().get_items(["from-a"])[0].title == "A brand new film"


def test_registry_entries_written_with_a_proxy_row_are_still_read():
    """Entries from before proxies were dropped (event log records, snapshots, Redis) carry a
    "proxy_row" field: read as before, the field ignored, and not written again."""
    old = {"id": "old", "title": "Old film", "tags": ["Drama"], "description": "", "proxy_row": 7}
    item = NewItem.from_json(old)
    assert (item.item_id, item.title, item.tags) == ("old", "Old film", ("Drama",))
    assert "proxy_row" not in item.to_json()
    (entry,) = decode_registry(json.dumps([{"ordinal": 1, "change": 2, **old}]))
    assert (entry.ordinal, entry.change, entry.item.item_id) == (1, 2, "old")
    (logged,) = decode_items(ITEMS_MARK + json.dumps([old]).encode())
    assert logged.item_id == "old"


def test_redis_entries_written_with_a_proxy_row_are_still_read(replicas):
    """A Redis registry entry from before proxies were dropped (its JSON has "proxy_row"): a
    fresh replica lists it, and a re-add through the Lua upsert merges over it."""
    a = replicas()
    (entry,) = a.add_items([new("legacy", embedding=np.ones(4, np.float32))])
    registry = a._items
    entries_key = registry.keys[1]
    raw = json.loads(registry._client.hget(entries_key, entry.ordinal))
    registry._client.hset(entries_key, entry.ordinal, json.dumps({**raw, "proxy_row": 9}))
    fresh = replicas()
    listed, _ = fresh.list_added_items(0, 100)
    assert [(e.item.item_id, e.row) for e in listed] == [("legacy", entry.row)]
    (again,) = fresh.add_items([new("legacy")])  # same text: the stored vector is kept
    assert again.ordinal == entry.ordinal and np.array_equal(again.item.embedding, np.ones(4))
