"""Items taken out of retrieval at runtime (sold out) never come back from a search, and come
back when made available again; over gRPC, and across a hot reload of the retriever."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from recserve.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.contract.errors import NotFound
from services.contract.types import FilterSpec
from services.feature.store import InMemoryFeatureStore
from services.platform import convert
from services.platform.server import create_server
from services.retrieval.retriever import Retriever
from services.retrieval.servicer import register

SERVICE = "recserve.v1.RetrievalService"


@pytest.fixture(scope="module")
def user(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    return store.get_user(str(store.users.ids[1]))


def test_unavailable_items_are_filtered_inside_the_search(bundle, user) -> None:
    retriever = Retriever.from_bundle(bundle)
    top = retriever.retrieve(user, 20, FilterSpec())
    gone = [retriever.catalog.by_index(int(r)).item_id for r in top.item_indices[:5]]
    assert retriever.set_items_available(gone, False) == 5
    assert retriever.set_items_available(gone, False) == 0  # idempotent
    after = retriever.retrieve(user, 20, FilterSpec())
    assert len(after) == 20  # still k results: filtered inside FAISS, not dropped afterwards
    assert not set(after.item_indices.tolist()) & set(top.item_indices[:5].tolist())
    assert retriever.index.unavailable == 5
    similar = retriever.similar(str(retriever.catalog.by_index(1).item_id), 50, FilterSpec())
    assert not set(similar.item_indices.tolist()) & set(top.item_indices[:5].tolist())
    assert retriever.set_items_available(gone, True) == 5
    again = retriever.retrieve(user, 20, FilterSpec())
    np.testing.assert_array_equal(again.item_indices, top.item_indices)
    with pytest.raises(NotFound):
        retriever.set_items_available(["no-such-item", gone[0]], False)
    assert retriever.index.unavailable == 0  # all or nothing


def test_a_reloaded_retriever_keeps_the_unavailable_items(bundle, user) -> None:
    old, new = Retriever.from_bundle(bundle), Retriever.from_bundle(bundle)
    top = old.retrieve(user, 10, FilterSpec())
    gone = [old.catalog.by_index(int(r)).item_id for r in top.item_indices[:3]]
    old.set_items_available(gone, False)
    new.adopt_availability(old)
    assert new.index.unavailable == 3
    assert not set(new.retrieve(user, 10, FilterSpec()).item_indices[:3].tolist()) & set(
        top.item_indices[:3].tolist()
    )


def test_set_items_available_over_grpc(bundle, user) -> None:
    retriever = Retriever.from_bundle(bundle)
    item = str(retriever.catalog.by_index(1).item_id)

    async def scenario():
        server, port = await create_server(register(retriever), port=0, service_names=[SERVICE])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
                off = await stub.SetItemsAvailable(
                    retrieval_pb2.SetItemsAvailableRequest(item_ids=[item], available=False)
                )
                found = await stub.Retrieve(
                    retrieval_pb2.RetrieveRequest(user=convert.user_state_to_proto(user), k=50)
                )
                codes = []
                for bad in ([], ["nope"], [""]):
                    try:
                        await stub.SetItemsAvailable(
                            retrieval_pb2.SetItemsAvailableRequest(item_ids=bad)
                        )
                    except grpc.aio.AioRpcError as exc:
                        codes.append(exc.code())
                return off, found, codes
        finally:
            await server.stop(None)

    off, found, codes = asyncio.run(scenario())
    assert off.changed == 1 and off.unavailable == 1 and off.bundle_version == bundle.version
    assert 1 not in found.item_indices
    assert codes == [
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.INVALID_ARGUMENT,
    ]
