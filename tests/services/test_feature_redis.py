"""RedisFeatureStore against a real redis-server on loopback (started by tests/redis_server.py):
parity with InMemoryFeatureStore, replicas, atomic batches, outages, durability, the event
stream and the feature service over gRPC with RECSERVE_FEATURE_BACKEND=redis."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import grpc
import numpy as np
import pyarrow.parquet as pq
import pytest

from recserve.v1 import common_pb2, feature_pb2, feature_pb2_grpc
from services.contract.bundle import Bundle
from services.contract.errors import BundleError, ConfigError, InvalidArgument, Unavailable
from services.contract.types import Event, EventKind, UserState
from services.feature.config import SERVICE_NAME, FeatureConfig, StoreConfig
from services.feature.redis_layout import parse_stream_id
from services.feature.redis_store import (
    _APPLY_LUA,
    RedisFeatureStore,
    check_durable,
    redis_client,
)
from services.feature.served import FeatureModel, build_store
from services.feature.servicer import register
from services.feature.store import InMemoryFeatureStore
from services.platform.server import create_server
from tests.redis_server import RedisServer, free_port
from tests.redis_server import redis_server as redis_server  # the fixture

DAY = 86_400
BASE_TS = 880_000_000  # inside MovieLens-100K's time range, so days collide with base activity

MakeStore = Callable[..., RedisFeatureStore]


@pytest.fixture(scope="module")
def busy_users(bundle) -> list[str]:
    log = pq.read_table(bundle.path("interactions.parquet"), columns=["user_id"]).to_pandas()
    return [str(u) for u in log["user_id"].value_counts().index[:3]]


@pytest.fixture
def prefix() -> str:
    return f"t-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_store(bundle, redis_server: RedisServer, prefix: str) -> MakeStore:
    """Replicas: every call is a new store (own client, own cache) over the same keys."""

    def make(url: str | None = None, bundle: Bundle = bundle, **kwargs) -> RedisFeatureStore:
        client = redis_client(url or redis_server.url, timeout_s=2.0)
        return RedisFeatureStore.from_bundle(bundle, client=client, prefix=prefix, **kwargs)

    return make


def assert_same_state(got: UserState, want: UserState) -> None:
    assert (got.user_id, got.known, got.user_index) == (want.user_id, want.known, want.user_index)
    assert got.event_count == want.event_count
    for name in ("profile", "history", "seen", "activity_days", "activity_values",
                 "history_times", "history_kinds"):  # fmt: skip
        a, b = getattr(got, name), getattr(want, name)
        assert a.dtype == b.dtype, name
        np.testing.assert_array_equal(a, b, err_msg=name)  # exact, float32 included


def random_events(store, users: list[str], n: int, seed: int) -> list[Event]:
    rng = random.Random(seed)
    items = [*store.catalog.vocab.ids[:40].tolist(), "no-such-item"]
    events = []
    for _ in range(n):
        kind = rng.choice(list(EventKind))
        events.append(
            Event(
                user_id=rng.choice(users),
                item_id=rng.choice(items),
                kind=kind,
                timestamp=BASE_TS + rng.randrange(0, 40 * DAY),
                rating=float(rng.randint(1, 5)) if kind is EventKind.RATING else 0.0,
                value=round(rng.uniform(0.5, 99.9), 2) if kind is EventKind.PURCHASE else 0.0,
            )
        )
    return events


def test_same_states_as_in_memory_over_an_event_sequence(bundle, make_store, busy_users):
    memory = InMemoryFeatureStore.from_bundle(bundle)
    replicas = [make_store(), make_store()]
    users = [*busy_users, "newcomer-1", "newcomer-2"]
    lookups = [*users, str(memory.users.ids[-1]), "never-seen"]
    recent = [str(memory.catalog.vocab.ids[7]), "no-such-item"]

    for step in range(6):
        batch = random_events(memory, users, 25, seed=step)
        assert memory.apply_events(batch) == replicas[step % 2].apply_events(batch) == 25
        for replica in replicas:
            for user_id in lookups:
                assert_same_state(replica.get_user(user_id), memory.get_user(user_id))
            assert_same_state(replica.get_user(users[0], recent), memory.get_user(users[0], recent))
            for got, want in zip(
                replica.get_users(lookups), memory.get_users(lookups), strict=True
            ):
                assert_same_state(got, want)

    fresh = make_store()  # no cache: folds the whole list at once
    for user_id in lookups:
        assert_same_state(fresh.get_user(user_id), memory.get_user(user_id))


def test_replicas_see_each_others_events(make_store, busy_users):
    a, b = make_store(), make_store()
    user_id = busy_users[0]
    item_1, item_2 = (str(i) for i in a.catalog.vocab.ids[:2])
    before = b.get_user(user_id)

    a.apply_events([Event(user_id, item_1, EventKind.VIEW, 2_000_000_000)])
    seen_by_b = b.get_user(user_id)
    b.apply_events([Event(user_id, item_2, EventKind.PURCHASE, 2_000_000_100, value=5.0)])
    seen_by_a = a.get_user(user_id)

    assert seen_by_b.history[0] == a.catalog.index(item_1)
    assert seen_by_b.event_count == before.event_count + 1
    assert seen_by_a.history[:2].tolist() == [a.catalog.index(item_2), a.catalog.index(item_1)]
    assert seen_by_a.activity_values[-1] == pytest.approx(2.0)  # engagement: one per event
    assert seen_by_a.event_count == before.event_count + 2


def test_invalid_batch_is_all_or_nothing(make_store, redis_server):
    store = make_store()
    item = str(store.catalog.vocab.ids[0])
    good = Event("batcher", item, EventKind.VIEW, 2_000_000_000)
    bad = Event("batcher", item, EventKind.RATING, 2_000_000_000, rating=7.0)
    with pytest.raises(InvalidArgument):
        store.apply_events([good, bad])
    with pytest.raises(InvalidArgument, match="at most 3"):
        make_store(max_batch=3).apply_events([good] * 4)

    with redis_server.client() as client:
        assert client.llen(store.user_key("batcher")) == 0
        assert client.xlen(store.stream_key) == 0
    assert store.get_user("batcher").event_count == 0


def test_stream_holds_every_event_for_retraining(make_store, redis_server):
    store = make_store()
    item = str(store.catalog.vocab.ids[3])
    events = [
        Event("buyer", item, EventKind.PURCHASE, 2_000_000_000, value=19.99),
        Event("rater", "no-such-item", EventKind.RATING, 2_000_000_060, rating=4.0),
    ]
    store.apply_events(events)

    with redis_server.client() as client:
        entries = client.xrange(store.stream_key)
    assert [fields for _id, fields in entries] == [
        {"bundle": store.bundle_version, "user": "buyer", "item": item, "kind": "purchase",
         "ts": "2000000000", "rating": "0.0", "value": "19.99"},
        {"bundle": store.bundle_version, "user": "rater", "item": "no-such-item",
         "kind": "rating", "ts": "2000000060", "rating": "4.0", "value": "0.0"},
    ]  # fmt: skip


def test_reset_list_is_detected_by_a_caching_replica(make_store, redis_server, busy_users):
    store, other = make_store(), make_store()
    user_id = busy_users[1]
    item_1, item_2 = (str(i) for i in store.catalog.vocab.ids[:2])
    base = store.get_user(user_id)
    store.apply_events([Event(user_id, item_1, EventKind.VIEW, 2_000_000_000)])
    assert store.get_user(user_id).event_count == base.event_count + 1  # now cached

    with redis_server.client() as client:
        client.delete(store.user_key(user_id))
    assert_same_state(store.get_user(user_id), base)

    other.apply_events([Event(user_id, item_2, EventKind.CLICK, 2_000_000_000)])
    after = store.get_user(user_id)  # same length as the cached list, different entry
    assert after.history[0] == store.catalog.index(item_2)
    assert after.event_count == base.event_count + 1


def test_acknowledged_events_survive_sigkill(bundle, tmp_path, busy_users):
    server = RedisServer.start(tmp_path / "redis")
    try:
        prefix = "durable"
        store = RedisFeatureStore.from_bundle(
            bundle, client=redis_client(server.url), prefix=prefix
        )
        item = str(store.catalog.vocab.ids[5])
        events = [Event(busy_users[0], item, EventKind.VIEW, 2_000_000_000 + i) for i in range(20)]
        for event in events:  # each one acknowledged separately
            assert store.apply_events([event]) == 1
        expected = store.get_user(busy_users[0])

        server.kill()
        with pytest.raises(Unavailable):
            store.get_user(busy_users[0])
        server.restart()

        assert_same_state(store.get_user(busy_users[0]), expected)  # old pool reconnects
        restarted = RedisFeatureStore.from_bundle(
            bundle, client=redis_client(server.url), prefix=prefix
        )
        assert_same_state(restarted.get_user(busy_users[0]), expected)
        with server.client() as client:
            assert client.xlen(restarted.stream_key) == len(events)
    finally:
        server.stop()


def test_redis_down_is_unavailable(make_store):
    store = make_store(url=f"redis://127.0.0.1:{free_port()}/0")
    item = str(store.catalog.vocab.ids[0])
    with pytest.raises(Unavailable):
        store.get_user("anyone")
    with pytest.raises(Unavailable):
        store.get_users(["a", "b"])
    with pytest.raises(Unavailable):
        store.apply_events([Event("anyone", item, EventKind.VIEW, 2_000_000_000)])


def test_start_up_refuses_unreachable_or_non_durable_redis(bundle, redis_server):
    with pytest.raises(ConfigError, match="unreachable"):
        RedisFeatureStore.connect(bundle, f"redis://127.0.0.1:{free_port()}/0")
    with redis_server.client() as client:
        client.config_set("appendfsync", "everysec")
        try:
            with pytest.raises(ConfigError, match="appendfsync=everysec"):
                check_durable(redis_client(redis_server.url), "test")
            store = RedisFeatureStore.connect(bundle, redis_server.url, require_durable=False)
            assert store.get_user("anyone").event_count == 0
        finally:
            client.config_set("appendfsync", "always")
    check_durable(redis_client(redis_server.url), "test")


def test_store_config_from_env():
    default = StoreConfig.from_env({})
    assert default.backend == "memory" and default.redis_url == "redis://127.0.0.1:6379/0"
    assert default.redis_prefix == "recserve" and not default.redis_allow_non_durable
    for env in (
        {"RECSERVE_FEATURE_BACKEND": "memcached"},
        {"RECSERVE_REDIS_URL": "http://localhost:6379"},
        {"RECSERVE_REDIS_PREFIX": "a b"},
        {"RECSERVE_REDIS_TIMEOUT_SECONDS": "0"},
        {"RECSERVE_REDIS_ALLOW_NON_DURABLE": "maybe"},
    ):
        with pytest.raises(ConfigError):
            StoreConfig.from_env(env)


def _event(user_id: str, item_id: str) -> common_pb2.Event:
    return common_pb2.Event(
        user_id=user_id, item_id=item_id, type=common_pb2.EVENT_TYPE_CLICK, timestamp=2_000_000_000
    )


@pytest.mark.timeout(120)
def test_feature_service_replicas_over_grpc(tiny_bundle, bundle, redis_server, prefix, busy_users):
    env = {
        "RECSERVE_ARTIFACTS": str(tiny_bundle.parent),
        "RECSERVE_FEATURE_BACKEND": "redis",
        "RECSERVE_REDIS_URL": redis_server.url,
        "RECSERVE_REDIS_PREFIX": prefix,
    }
    config, store_config = FeatureConfig.from_env(env), StoreConfig.from_env(env)
    built = [build_store(config, store_config, bundle) for _ in range(2)]
    assert all(durability is None for _, durability in built)  # Redis is the durable log
    replicas = [store for store, _ in built]
    assert all(isinstance(r, RedisFeatureStore) for r in replicas)
    user_id, item_id = busy_users[2], str(replicas[0].catalog.vocab.ids[9])
    dead = RedisFeatureStore.from_bundle(
        bundle, client=redis_client(f"redis://127.0.0.1:{free_port()}/0"), prefix=prefix
    )

    async def scenario():
        servers = [
            await create_server(register(s), service_names=[SERVICE_NAME])
            for s in (*replicas, dead)
        ]
        try:
            channels = [grpc.aio.insecure_channel(f"127.0.0.1:{port}") for _, port in servers]
            a, b, down = (feature_pb2_grpc.FeatureServiceStub(c) for c in channels)
            before = await b.GetUser(feature_pb2.GetUserRequest(user_id=user_id))
            applied = await a.ApplyEvents(
                feature_pb2.ApplyEventsRequest(events=[_event(user_id, item_id)])
            )
            after = await b.GetUser(feature_pb2.GetUserRequest(user_id=user_id))
            many = await b.GetUsers(feature_pb2.GetUsersRequest(user_ids=[user_id, "nobody"]))
            with pytest.raises(grpc.aio.AioRpcError) as caught:
                await down.GetUser(feature_pb2.GetUserRequest(user_id=user_id))
            for channel in channels:
                await channel.close()
            return before, applied, after, many, caught.value.code()
        finally:
            for server, _ in servers:
                await server.stop(None)

    before, applied, after, many, down_code = asyncio.run(scenario())
    assert applied.accepted == 1
    assert after.history[0] == replicas[0].catalog.index(item_id)
    assert list(after.history[1:]) == list(before.history[: len(after.history) - 1])
    assert many.users[0] == after and not many.users[1].known
    assert down_code == grpc.StatusCode.UNAVAILABLE


# --- lists shared by every bundle version (hot reload), stream positions, the layout rebuild ---


def other_version(bundle: Bundle, version: str, **split) -> Bundle:
    """The same bundle under another version (as after a retraining), with data.split entries."""
    manifest = {**bundle.manifest, "version": version}
    if split:
        data = manifest.get("data", {})
        manifest["data"] = {**data, "split": {**data.get("split", {}), **split}}
    return dataclasses.replace(bundle, manifest=manifest)


def test_a_new_bundle_sees_the_live_events_applied_under_the_old_one(
    bundle, make_store, busy_users
):
    memory = InMemoryFeatureStore.from_bundle(bundle)
    old = make_store()
    users = [*busy_users, "newcomer-b"]
    for step in range(3):
        batch = random_events(memory, users, 20, seed=100 + step)
        memory.apply_events(batch)
        old.apply_events(batch)

    new = make_store(bundle=other_version(bundle, "B"))
    assert new.bundle_version == "B" != old.bundle_version
    for user_id in users:
        assert_same_state(new.get_user(user_id), memory.get_user(user_id))
    for got, want in zip(new.get_users(users), memory.get_users(users), strict=True):
        assert_same_state(got, want)


def test_grace_period_events_through_the_old_store_reach_the_new_one(
    bundle, make_store, busy_users
):
    memory = InMemoryFeatureStore.from_bundle(bundle)
    old = make_store()
    user_id = busy_users[0]
    first = random_events(memory, [user_id], 5, seed=7)
    memory.apply_events(first)
    old.apply_events(first)

    new = make_store(bundle=other_version(bundle, "B"))  # the reload: both serve for a while
    assert_same_state(new.get_user(user_id), memory.get_user(user_id))  # now cached in `new`
    for step, (writer, reader) in enumerate([(old, new), (new, old), (old, new)]):
        batch = random_events(memory, [user_id, "newcomer-g"], 6, seed=20 + step)
        memory.apply_events(batch)
        writer.apply_events(batch)  # a request pinned to the writer's version
        for store in (reader, writer):
            for u in (user_id, "newcomer-g"):
                assert_same_state(store.get_user(u), memory.get_user(u))


def test_a_bundle_with_a_stream_position_folds_only_later_entries(
    bundle, make_store, redis_server, busy_users
):
    store = make_store()
    user_id = busy_users[1]
    events = random_events(store, [user_id, "newcomer-p"], 12, seed=3)
    store.apply_events(events[:5])
    store.apply_events(events[5:])
    with redis_server.client() as client:
        ids = [stream_id for stream_id, _ in client.xrange(store.stream_key)]
    assert len(ids) == 12

    # As if retrained on the stream up to event 5 (a hand-made manifest entry: the base state is
    # the same here, so the first five events are simply not folded).
    retrained = make_store(bundle=other_version(bundle, "R", feedback_stream=ids[4]))
    assert retrained.stream_position == parse_stream_id(ids[4])
    later = InMemoryFeatureStore.from_bundle(bundle)
    later.apply_events(events[5:])
    everything = InMemoryFeatureStore.from_bundle(bundle)
    everything.apply_events(events)
    for u in (user_id, "newcomer-p", "never-seen"):
        assert_same_state(retrained.get_user(u), later.get_user(u))
        assert_same_state(store.get_user(u), everything.get_user(u))  # old bundle: all of them

    more = random_events(store, [user_id], 3, seed=4)
    store.apply_events(more)  # the cached record of `retrained` is extended, same skip rule
    later.apply_events(more)
    assert_same_state(retrained.get_user(user_id), later.get_user(user_id))

    past_all = make_store(bundle=other_version(bundle, "S", feedback_stream=ids[-1]))
    fresh = InMemoryFeatureStore.from_bundle(bundle)
    fresh.apply_events(more)
    assert_same_state(past_all.get_user(user_id), fresh.get_user(user_id))
    assert parse_stream_id("5") == (5, 0) < parse_stream_id("5-1") < parse_stream_id("10-0")
    with pytest.raises(BundleError, match="feedback_stream"):
        make_store(bundle=other_version(bundle, "X", feedback_stream="yesterday"))


def old_layout_apply(client, store: RedisFeatureStore, version: str, events: list[Event]) -> None:
    """apply_events as the previous code did it: the same script, lists keyed per version."""
    keys = [store.stream_key, *(f"{store.prefix}:{version}:user:{e.user_id}" for e in events)]
    args = [version]
    for e in events:
        args += [e.user_id, e.item_id, e.kind.value, str(e.timestamp), repr(float(e.rating)),
                 repr(float(e.value)), store._list_entry(e)]  # fmt: skip
    client.register_script(_APPLY_LUA)(keys=keys, args=args)


def test_connect_rebuilds_the_lists_of_an_old_per_version_deployment(
    bundle, redis_server, prefix, busy_users, caplog
):
    users = [*busy_users, "newcomer-m"]
    memory = InMemoryFeatureStore.from_bundle(bundle)
    writer = RedisFeatureStore.from_bundle(
        bundle, client=redis_client(redis_server.url), prefix=prefix
    )
    with redis_server.client() as client:
        for step, version in enumerate(["v1", "v1", "v2"]):  # two old bundle versions
            batch = random_events(memory, users, 30, seed=200 + step)
            memory.apply_events(batch)
            old_layout_apply(client, writer, version, batch)
        client.xadd(writer.stream_key, {"note": "not an event"})
        assert client.get(f"{prefix}:layout") is None
        assert not client.keys(f"{prefix}:user:*")

    caplog.set_level(logging.INFO, logger="services.feature.redis_layout")
    store = RedisFeatureStore.connect(other_version(bundle, "v3"), redis_server.url, prefix=prefix)
    assert "rebuilt from stream" in caplog.text and "90 events" in caplog.text
    for user_id in users:
        assert_same_state(store.get_user(user_id), memory.get_user(user_id))

    with redis_server.client() as client:
        assert client.get(f"{prefix}:layout") == "2"
        assert client.get(f"{prefix}:layout:lock") is None
        lists = {u: client.lrange(store.user_key(u), 0, -1) for u in users}
        assert sum(map(len, lists.values())) == 90
        # Run again (as after a replica died half-way): nothing is appended twice.
        client.delete(f"{prefix}:layout")
        client.ltrim(store.user_key(users[0]), 0, 4)  # a half-done rebuild of this user
    again = store.ensure_layout(chunk=7)
    assert again is not None and (again.events, again.skipped) == (90, 1)
    assert again.appended == len(lists[users[0]]) - 5
    assert store.ensure_layout() is None  # marker set: nothing to do
    with redis_server.client() as client:
        assert {u: client.lrange(store.user_key(u), 0, -1) for u in users} == lists
    fresh = RedisFeatureStore.connect(bundle, redis_server.url, prefix=prefix)
    for user_id in users:
        assert_same_state(fresh.get_user(user_id), memory.get_user(user_id))


def test_two_replicas_starting_at_once_rebuild_the_lists_once(
    bundle, make_store, redis_server, prefix, busy_users
):
    writer = make_store()
    events = random_events(writer, busy_users, 60, seed=9)
    with redis_server.client() as client:
        old_layout_apply(client, writer, "v1", events)
    memory = InMemoryFeatureStore.from_bundle(bundle)
    memory.apply_events(events)

    replicas = [make_store(), make_store()]
    barrier = threading.Barrier(2)

    def start(store: RedisFeatureStore):
        barrier.wait()
        return store.ensure_layout(chunk=5)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(start, replicas))
    assert sorted(r is None for r in results) == [False, True]  # one rebuilt, one waited
    assert next(r for r in results if r is not None).appended == 60
    for replica in replicas:
        for user_id in busy_users:
            assert_same_state(replica.get_user(user_id), memory.get_user(user_id))


def test_waiting_for_a_rebuild_that_never_ends_is_unavailable(make_store, redis_server, prefix):
    store = make_store()
    with redis_server.client() as client:
        client.set(f"{prefix}:layout:lock", "someone else", px=10_000)
    with pytest.raises(Unavailable, match="being rebuilt"):
        store.ensure_layout(wait_s=0.2)


def test_a_rebuild_after_the_stream_was_trimmed_says_so(make_store, redis_server, caplog):
    writer = make_store()
    item = str(writer.catalog.vocab.ids[0])
    events = [Event("trimmed", item, EventKind.VIEW, 2_000_000_000 + i) for i in range(4)]
    with redis_server.client() as client:
        old_layout_apply(client, writer, "v1", events)
        client.xtrim(writer.stream_key, maxlen=3, approximate=False)
    caplog.set_level(logging.INFO, logger="services.feature.redis_layout")
    rebuilt = make_store().ensure_layout()
    assert rebuilt is not None and (rebuilt.trimmed, rebuilt.events) == (1, 3)
    assert "lost 1 entries to XTRIM/XDEL" in caplog.text
    assert writer.get_user("trimmed").event_count == 3


def test_feature_model_reload_with_redis_keeps_the_live_events(
    tiny_bundle, bundle, redis_server, prefix, busy_users
):
    env = {
        "RECSERVE_ARTIFACTS": str(tiny_bundle.parent),
        "RECSERVE_FEATURE_BACKEND": "redis",
        "RECSERVE_REDIS_URL": redis_server.url,
        "RECSERVE_REDIS_PREFIX": prefix,
    }
    served = FeatureModel(FeatureConfig.from_env(env), StoreConfig.from_env(env))
    old = served.from_bundle(bundle)
    user_id, item_id = busy_users[0], str(old.catalog.vocab.ids[11])
    before = old.get_user(user_id).event_count
    old.apply_events([Event(user_id, item_id, EventKind.CLICK, 2_000_000_000)])
    new = served.from_bundle(other_version(bundle, "B"))  # the hot reload
    served.adopt(old, new)
    old.apply_events([Event(user_id, item_id, EventKind.VIEW, 2_000_000_100)])  # grace period
    for store in (old, new):
        state = store.get_user(user_id)
        assert state.history[:2].tolist() == [old.catalog.index(item_id)] * 2
        assert state.event_count == before + 2
