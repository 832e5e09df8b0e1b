"""FeatureService: protobuf <-> FeatureStore, nothing else."""

from __future__ import annotations

import asyncio

import grpc

from recserve.v1 import common_pb2, feature_pb2, feature_pb2_grpc
from services.contract.errors import InvalidArgument, check_limit
from services.feature.registry import DEFAULT_LIST_LIMIT
from services.feature.store import DEFAULT_MAX_BATCH, DEFAULT_MAX_IDS, FeatureStore
from services.platform import convert
from services.platform.reload import ModelHolder, as_holder

IDS_ENV = "RECSERVE_FEATURE_MAX_IDS"
EVENTS_ENV = "RECSERVE_FEATURE_MAX_EVENTS"


class FeatureServicer(feature_pb2_grpc.FeatureServiceServicer):
    """Request sizes are checked first, before any conversion: RESOURCE_EXHAUSTED over a bound.
    GetUser / GetUsers answer in the bundle version the request is pinned to while this service
    holds it (current store, or the previous one within the reload grace period), else they
    refuse with FAILED_PRECONDITION naming the versions held (docs/bundle.md)."""

    def __init__(self, store: FeatureStore | ModelHolder[FeatureStore]) -> None:
        self._holder = as_holder(store, getattr(store, "bundle_version", ""))
        current = self._holder.current
        self._max_ids = int(getattr(current, "max_ids", DEFAULT_MAX_IDS))
        self._max_events = int(getattr(current, "max_batch", DEFAULT_MAX_BATCH))

    @property
    def _store(self) -> FeatureStore:
        """The live store (hot reload swaps it); read once per call."""
        return self._holder.current

    async def GetUser(
        self, request: feature_pb2.GetUserRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.UserFeatures:
        check_limit("recent_items", len(request.recent_items), self._max_ids, IDS_ENV)
        version, store = self._holder.serve(request.bundle_version)
        state = store.get_user(request.user_id, tuple(request.recent_items))
        return convert.user_state_to_proto(state, version)

    async def GetUsers(
        self, request: feature_pb2.GetUsersRequest, context: grpc.aio.ServicerContext
    ) -> feature_pb2.GetUsersResponse:
        check_limit("user_ids", len(request.user_ids), self._max_ids, IDS_ENV)
        version, store = self._holder.serve(request.bundle_version)
        states = store.get_users(tuple(request.user_ids))
        return feature_pb2.GetUsersResponse(
            users=[convert.user_state_to_proto(s, version) for s in states]
        )

    async def GetItems(
        self, request: feature_pb2.GetItemsRequest, context: grpc.aio.ServicerContext
    ) -> feature_pb2.GetItemsResponse:
        check_limit("item_ids", len(request.item_ids), self._max_ids, IDS_ENV)
        infos = self._store.get_items(tuple(request.item_ids))
        return feature_pb2.GetItemsResponse(items=[convert.item_info_to_proto(i) for i in infos])

    async def ApplyEvents(
        self, request: feature_pb2.ApplyEventsRequest, context: grpc.aio.ServicerContext
    ) -> feature_pb2.ApplyEventsResponse:
        check_limit("events", len(request.events), self._max_events, EVENTS_ENV)
        events = convert.events_from_proto(request.events)
        # Resolves once the batch is in the event log (durable) and applied in memory.
        accepted = await asyncio.wrap_future(self._store.submit_events(events))
        return feature_pb2.ApplyEventsResponse(accepted=accepted)

    async def AddItems(
        self, request: common_pb2.AddItemsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.AddItemsResponse:
        check_limit("items", len(request.items), self._max_ids, IDS_ENV)
        items = [convert.new_item_from_proto(m) for m in request.items]
        store = self._store
        # Resolves once the upsert is durable (event log, or Redis) and applied.
        entries = await asyncio.wrap_future(store.submit_items(items))
        return common_pb2.AddItemsResponse(
            items=[convert.added_item_to_proto(e) for e in entries],
            bundle_version=store.bundle_version,
        )

    async def ListAddedItems(
        self, request: feature_pb2.ListAddedItemsRequest, context: grpc.aio.ServicerContext
    ) -> feature_pb2.ListAddedItemsResponse:
        if request.after < 0 or request.limit < 0:
            raise InvalidArgument("after and limit must be >= 0")
        limit = min(request.limit or DEFAULT_LIST_LIMIT, DEFAULT_LIST_LIMIT)
        store = self._store
        entries, change = store.list_added_items(request.after, limit)
        return feature_pb2.ListAddedItemsResponse(
            items=[convert.added_item_to_proto(e) for e in entries],
            last_change=change,
            bundle_version=store.bundle_version,
        )


def register(store: FeatureStore | ModelHolder[FeatureStore]):
    """-> a `register(server)` callback for services.platform.server.create_server."""

    def _register(server: grpc.aio.Server) -> None:
        feature_pb2_grpc.add_FeatureServiceServicer_to_server(FeatureServicer(store), server)

    return _register
