"""RetrievalService: protobuf <-> Retriever, nothing else."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc

from recserve.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc
from services.contract.added_items import MAX_ITEMS_PER_CALL, NewItem
from services.contract.errors import InvalidArgument, ResourceExhausted, check_limit
from services.platform import convert
from services.platform.reload import ModelHolder, as_holder
from services.retrieval.added import Added
from services.retrieval.retriever import Retriever

K_ENV = "RECSERVE_RETRIEVAL_MAX_K"
MAX_AVAILABILITY_IDS = 10_000  # item ids per SetItemsAvailable call


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    """A request is served by the bundle version it is pinned to (the user's bundle_version,
    "" = current) while this service holds it (current, or previous within the reload grace
    period), else refused with FAILED_PRECONDITION naming the versions held (docs/bundle.md);
    candidates go back labelled with the version that produced them."""

    def __init__(self, retriever: Retriever | ModelHolder[Retriever]) -> None:
        self._holder = as_holder(retriever, getattr(retriever, "bundle_version", ""))

    async def Retrieve(
        self, request: retrieval_pb2.RetrieveRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.Candidates:
        check_limit("k", request.k, self._holder.current.max_k, K_ENV)
        user = convert.user_state_from_proto(request.user, activity=False)
        filters = convert.filters_from_proto(request.filters)
        version, retriever = self._holder.serve(user.bundle_version)
        found = await retriever.retrieve_batched(user, request.k, filters)
        return convert.candidates_to_proto(found, version)

    async def RetrieveSimilar(
        self, request: retrieval_pb2.RetrieveSimilarRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.Candidates:
        check_limit("k", request.k, self._holder.current.max_k, K_ENV)
        filters = convert.filters_from_proto(request.filters)
        version, retriever = self._holder.live
        found = retriever.similar(request.item_id, request.k, filters)
        return convert.candidates_to_proto(found, version)

    async def TagAffinities(
        self, request: retrieval_pb2.TagAffinitiesRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.TagAffinitiesResponse:
        user = convert.user_state_from_proto(request.user, activity=False)
        version, retriever = self._holder.serve(user.bundle_version)
        # Range-check user index, profile and history (InvalidArgument) before anything indexes
        # with them: the history's tag shares are read before the user tower ever runs.
        retriever.tower_feeds(user)
        pairs = retriever.tag_affinities(user, request.k)
        return retrieval_pb2.TagAffinitiesResponse(
            tags=[t for t, _ in pairs],
            affinities=[a for _, a in pairs],
            bundle_version=version,
        )

    async def SetItemsAvailable(
        self, request: retrieval_pb2.SetItemsAvailableRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.SetItemsAvailableResponse:
        if len(request.item_ids) > MAX_AVAILABILITY_IDS:
            raise ResourceExhausted(
                f"item_ids: {len(request.item_ids)} exceeds {MAX_AVAILABILITY_IDS} per call"
            )
        if not request.item_ids:
            raise InvalidArgument("item_ids is empty")
        version, retriever = self._holder.live
        changed = retriever.set_items_available(list(request.item_ids), request.available)
        return retrieval_pb2.SetItemsAvailableResponse(
            changed=changed, unavailable=retriever.index.unavailable, bundle_version=version
        )

    async def AddItems(
        self, request: common_pb2.AddItemsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.AddItemsResponse:
        if len(request.items) > MAX_ITEMS_PER_CALL:
            raise ResourceExhausted(
                f"items: {len(request.items)} exceeds {MAX_ITEMS_PER_CALL} per call"
            )
        items = [convert.new_item_from_proto(m) for m in request.items]
        version, added = await add_items(self._holder, items)
        return common_pb2.AddItemsResponse(
            items=[
                common_pb2.AddedItem(row=a.row, item=convert.new_item_to_proto(_public(a.item)))
                for a in added
            ],
            bundle_version=version,
        )


async def add_items(
    holder: ModelHolder[Retriever], items: list[NewItem]
) -> tuple[str, list[Added]]:
    """Encode off the event loop (ONNX), index on it (where searches run); if a hot reload
    swapped the retriever meanwhile, index into the new one (adopt_added already copied what
    the old one had before the swap)."""
    version, retriever = holder.live
    vectors = await asyncio.to_thread(retriever.prepare_items, items)
    now_version, now = holder.live
    if now is not retriever:
        version, retriever = now_version, now
        vectors = await asyncio.to_thread(retriever.prepare_items, items)
    return version, retriever.add_prepared(items, vectors)


def _public(item: NewItem) -> NewItem:
    return dataclasses.replace(item, embedding=None)


def register(retriever: Retriever | ModelHolder[Retriever]):
    """-> a `register(server)` callback for services.platform.server.create_server."""

    def _register(server: grpc.aio.Server) -> None:
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(
            RetrievalServicer(retriever), server
        )

    return _register
