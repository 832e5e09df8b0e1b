"""FeatureService over gRPC (real server on port 0, real bundle)."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from recserve.v1 import common_pb2, feature_pb2, feature_pb2_grpc
from services.contract.bundle import Bundle
from services.contract.features import EVENT_TOKENS
from services.contract.types import Event, EventKind
from services.feature.config import SERVICE_NAME
from services.feature.servicer import register
from services.feature.store import InMemoryFeatureStore
from services.platform.server import create_server


@pytest.fixture
def store(tiny_bundle) -> InMemoryFeatureStore:
    return InMemoryFeatureStore.from_bundle(Bundle.load(tiny_bundle), max_ids=10)


def call(store, method: str, request):
    async def scenario():
        server, port = await create_server(register(store), service_names=[SERVICE_NAME])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = feature_pb2_grpc.FeatureServiceStub(channel)
                return await getattr(stub, method)(request)
        finally:
            await server.stop(None)

    return asyncio.run(scenario())


def status_of(store, method: str, request) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        call(store, method, request)
    return caught.value.code()


def _user_and_item(store):
    return store.users.ids[0], store.catalog.vocab.ids[0]


def test_get_user_returns_stored_features(store):
    user_id, _ = _user_and_item(store)
    expected = store.get_user(user_id)

    msg = call(store, "GetUser", feature_pb2.GetUserRequest(user_id=user_id))

    assert msg.known and msg.user_index == expected.user_index
    assert list(msg.history) == expected.history[expected.history > 0].tolist()
    assert list(msg.seen) == expected.seen.tolist()
    assert msg.bundle_version == store.bundle_version


def test_apply_events_then_get_user_sees_it(store):
    user_id, item_id = _user_and_item(store)
    event = common_pb2.Event(
        user_id=user_id, item_id=item_id, type=common_pb2.EVENT_TYPE_CLICK, timestamp=0
    )
    applied = call(store, "ApplyEvents", feature_pb2.ApplyEventsRequest(events=[event]))
    msg = call(store, "GetUser", feature_pb2.GetUserRequest(user_id=user_id))

    assert applied.accepted == 1
    assert msg.history[0] == store.catalog.index(item_id)


def test_get_users_keeps_request_order(store):
    ids = [store.users.ids[1], "someone-new", store.users.ids[0]]
    msg = call(store, "GetUsers", feature_pb2.GetUsersRequest(user_ids=ids))
    assert [u.user_id for u in msg.users] == ids
    assert [u.known for u in msg.users] == [True, False, True]


def test_get_items_returns_titles_and_tags(store):
    _, item_id = _user_and_item(store)
    msg = call(store, "GetItems", feature_pb2.GetItemsRequest(item_ids=[item_id]))
    assert msg.items[0].item_id == item_id and msg.items[0].item_index == 1
    assert msg.items[0].title


def test_get_items_unknown_is_not_found(store):
    request = feature_pb2.GetItemsRequest(item_ids=["no-such-item"])
    assert status_of(store, "GetItems", request) == grpc.StatusCode.NOT_FOUND


def test_empty_user_id_is_invalid(store):
    request = feature_pb2.GetUserRequest(user_id="")
    assert status_of(store, "GetUser", request) == grpc.StatusCode.INVALID_ARGUMENT


def test_too_many_user_ids_is_resource_exhausted(store):
    request = feature_pb2.GetUsersRequest(user_ids=[f"u{i}" for i in range(11)])
    assert status_of(store, "GetUsers", request) == grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize(
    "event",
    [
        common_pb2.Event(user_id="u", item_id="i", type=common_pb2.EVENT_TYPE_UNSPECIFIED),
        common_pb2.Event(user_id="u", item_id="i", type=common_pb2.EVENT_TYPE_RATING, rating=6),
        common_pb2.Event(user_id="u", item_id="i", type=common_pb2.EVENT_TYPE_PURCHASE, value=-1),
        common_pb2.Event(user_id="", item_id="i", type=common_pb2.EVENT_TYPE_VIEW),
    ],
    ids=["unspecified-type", "rating-6", "negative-value", "empty-user"],
)
def test_invalid_event_is_invalid_argument(store, event):
    request = feature_pb2.ApplyEventsRequest(events=[event])
    assert status_of(store, "ApplyEvents", request) == grpc.StatusCode.INVALID_ARGUMENT


def test_get_user_in_a_version_it_does_not_hold_is_failed_precondition(store):
    """Users are answered in the version the request is pinned to, or refused (naming the
    versions held); "" and the store's own version are served."""
    user_id = store.users.id_of(1)
    for request, method in (
        (feature_pb2.GetUserRequest(user_id=user_id, bundle_version="other"), "GetUser"),
        (feature_pb2.GetUsersRequest(user_ids=[user_id], bundle_version="other"), "GetUsers"),
    ):
        assert status_of(store, method, request) == grpc.StatusCode.FAILED_PRECONDITION
    pinned = feature_pb2.GetUserRequest(user_id=user_id, bundle_version=store.bundle_version)
    assert call(store, "GetUser", pinned).bundle_version == store.bundle_version


def test_history_events_reach_the_gateway_in_split_mode(store):
    """GetUser carries each history entry's event time and kind; the gateway's RemoteFeatures
    reads them back aligned with the padded history."""
    from services.gateway.config import Backend
    from services.gateway.stages.remote import RemoteFeatures

    user_id, item_id = _user_and_item(store)
    store.apply_events([Event(user_id, item_id, EventKind.PURCHASE, 2_000_000_000, value=3.0)])
    expected = store.get_user(user_id)
    n = int((expected.history > 0).sum())

    async def scenario():
        server, port = await create_server(register(store), service_names=[SERVICE_NAME])
        stage = RemoteFeatures(Backend("features", f"127.0.0.1:{port}", 5.0), store.spec)
        try:
            return await stage.get_user(user_id)
        finally:
            await stage.close()
            await server.stop(None)

    msg = call(store, "GetUser", feature_pb2.GetUserRequest(user_id=user_id))
    state = asyncio.run(scenario())

    assert list(msg.history_times) == expected.history_times[:n].tolist()
    assert list(msg.history_kinds) == expected.history_kinds[:n].tolist()
    assert msg.history_times[0] == 2_000_000_000
    assert msg.history_kinds[0] == EVENT_TOKENS.index("purchase")
    np.testing.assert_array_equal(state.history, expected.history)
    np.testing.assert_array_equal(state.history_times, expected.history_times)
    np.testing.assert_array_equal(state.history_kinds, expected.history_kinds)
