"""Split mode: AddItems through one gateway; a second gateway and a restarted retrieval learn
the item from the feature service's registry (services.platform.item_sync) within seconds. Bad
items are refused by the gateway before anything is registered."""

from __future__ import annotations

import dataclasses
import time

import grpc
import pytest

from recserve.client import RecserveClient
from recserve.v1 import (
    common_pb2,
    feature_pb2,
    feature_pb2_grpc,
    gateway_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)
from services.contract.content import has_content_encoder
from services.contract.types import FilterSpec
from services.feature.store import InMemoryFeatureStore
from services.gateway.app import build_pipeline, start_gateway, start_item_sync
from services.platform.reload import ModelHolder
from services.platform.server import create_server
from services.retrieval import servicer as retrieval_servicer
from services.retrieval.config import RetrievalConfig
from services.retrieval.retriever import Retriever
from services.retrieval.served import start_sync

from .conftest import gateway_settings

SYNC_S = "0.2"


def wait_for(check, timeout: float = 20.0):
    """Poll `check` until it returns something truthy (or raise its last error)."""
    deadline, last = time.monotonic() + timeout, None
    while time.monotonic() < deadline:
        try:
            found = check()
            if found:
                return found
        except grpc.RpcError as exc:
            last = exc
        time.sleep(0.05)
    raise AssertionError(f"not converged in {timeout}s (last error: {last})")


@pytest.fixture(scope="module")
def second_gateway(bundle, split_stack, loop_thread):
    """Another split gateway on the same backends, syncing the registry every 0.2 s."""
    backends = {k: v for k, v in split_stack.items() if k != "gateway"}
    settings = gateway_settings(bundle, "split", **backends)
    settings = dataclasses.replace(settings, item_sync_s=float(SYNC_S))

    async def go():
        holder = ModelHolder(build_pipeline(settings, bundle), bundle.version)
        server, port = await start_gateway(settings, holder, port=0)
        return server, start_item_sync(settings, holder), f"127.0.0.1:{port}"

    server, sync, target = loop_thread.run(go())
    yield target
    loop_thread.run(sync.stop())
    loop_thread.run(server.stop(None))


def start_retrieval(bundle, feature_target: str, loop_thread):
    """A retrieval process that (re)started after the item was added: the real wiring of
    services.retrieval.served (config from env -> ItemSync over an aio channel)."""
    config = RetrievalConfig.from_env(
        {"RECSERVE_FEATURE_ADDR": feature_target, "RECSERVE_ITEM_SYNC_S": SYNC_S}
    )

    async def go():
        holder = ModelHolder(Retriever.from_bundle(bundle), bundle.version)
        server, port = await create_server(
            retrieval_servicer.register(holder), port=0,
            service_names=["recserve.v1.RetrievalService"],
        )  # fmt: skip
        return server, start_sync(config, holder), holder, f"127.0.0.1:{port}"

    return loop_thread.run(go())


def test_an_item_added_through_one_gateway_reaches_the_others(
    bundle, split_stack, second_gateway, loop_thread, known_users
):
    user_id = known_users[3]
    user = InMemoryFeatureStore.from_bundle(bundle).get_user(user_id)
    vector = Retriever.from_bundle(bundle, encoder=None).user_embedding(user)
    item = common_pb2.NewItem(item_id="synced-item", title="Synced", tags=["x-new"])
    item.embedding.extend(vector.tolist())
    with grpc.insecure_channel(split_stack["gateway"]) as channel:
        reply = gateway_pb2_grpc.GatewayStub(channel).AddItems(
            common_pb2.AddItemsRequest(items=[item]), timeout=30
        )
    (added,) = reply.items
    assert added.row > 1 and added.item.proxy_row > 0 and not added.item.embedding

    with RecserveClient(split_stack["gateway"], timeout=30) as first:
        assert "synced-item" in [i.item_id for i in first.recommend(user_id, k=50).items]
        assert len(first.similar_items("synced-item", k=5).items) == 5
        # Tags are data: the tag the item brought filters at once.
        tagged = first.recommend(user_id, k=50, include_tags=["x-new"])
        assert [i.item_id for i in tagged.items] == ["synced-item"] and not tagged.fallbacks

    with RecserveClient(second_gateway, timeout=30) as second:
        found = wait_for(
            lambda: [i for i in second.recommend(user_id, k=50).items if i.item_id == "synced-item"]
        )
        assert found[0].title == "Synced" and list(found[0].tags) == ["x-new"]
        assert len(second.similar_items("synced-item", k=5).items) == 5
        tagged = second.recommend(user_id, k=50, include_tags=["x-new"])  # after its item sync
        assert [i.item_id for i in tagged.items] == ["synced-item"]

    server, sync, holder, target = start_retrieval(bundle, split_stack["feature"], loop_thread)
    try:
        with grpc.insecure_channel(target) as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            similar = wait_for(
                lambda: stub.RetrieveSimilar(
                    retrieval_pb2.RetrieveSimilarRequest(item_id="synced-item", k=3), timeout=10
                )
            )
        assert len(similar.item_indices) == 3
        restarted = holder.current  # indexed from the vector the registry stored
        assert restarted.catalog.index("synced-item") == added.row
        assert restarted.added.by_id["synced-item"].proxy == added.item.proxy_row
        assert restarted.retrieve(user, 5).item_indices[0] == added.row
        only = restarted.retrieve(user, 5, FilterSpec(include_tags=("x-new",)))
        assert only.item_indices.tolist() == [added.row]
    finally:
        loop_thread.run(sync.stop())
        loop_thread.run(server.stop(None))


def test_items_retrieval_would_refuse_are_never_registered(bundle, split_stack):
    wrong_dim = common_pb2.NewItem(item_id="wrong-dim", title="W")
    wrong_dim.embedding.extend([0.5] * (bundle.embedding_dim + 1))
    cases = [([wrong_dim], grpc.StatusCode.INVALID_ARGUMENT)]
    if not has_content_encoder(bundle.manifest):
        no_vec = common_pb2.NewItem(item_id="text-only", title="T")
        cases.append(([no_vec], grpc.StatusCode.FAILED_PRECONDITION))
    with grpc.insecure_channel(split_stack["gateway"]) as channel:
        stub = gateway_pb2_grpc.GatewayStub(channel)
        for items, code in cases:
            with pytest.raises(grpc.RpcError) as caught:
                stub.AddItems(common_pb2.AddItemsRequest(items=items), timeout=30)
            assert caught.value.code() == code, caught.value.details()
    with grpc.insecure_channel(split_stack["feature"]) as channel:
        listed = feature_pb2_grpc.FeatureServiceStub(channel).ListAddedItems(
            feature_pb2.ListAddedItemsRequest(after=0), timeout=30
        )
    ids = {m.item.item_id for m in listed.items}
    assert not ids & {"wrong-dim", "text-only"}


def test_an_item_registered_while_retrieval_was_down_gets_indexed_and_a_proxy(
    bundle, split_stack, second_gateway
):
    """Only the feature service took it (as when retrieval was unreachable during AddItems):
    proxy 0, not indexed. A gateway's item sync repairs it: indexed, proxy recorded."""
    item = common_pb2.NewItem(item_id="orphan-item", title="Orphan")
    item.embedding.extend([1.0] + [0.0] * (bundle.embedding_dim - 1))
    with grpc.insecure_channel(split_stack["feature"]) as channel:
        features = feature_pb2_grpc.FeatureServiceStub(channel)
        (registered,) = features.AddItems(
            common_pb2.AddItemsRequest(items=[item]), timeout=30
        ).items
        assert registered.row > 0 and registered.item.proxy_row == 0

        def proxy() -> int:
            listed = features.ListAddedItems(feature_pb2.ListAddedItemsRequest(after=0), timeout=30)
            return next(m.item.proxy_row for m in listed.items if m.item.item_id == "orphan-item")

        assert wait_for(proxy) > 0
    with grpc.insecure_channel(split_stack["retrieval"]) as channel:
        similar = retrieval_pb2_grpc.RetrievalServiceStub(channel).RetrieveSimilar(
            retrieval_pb2.RetrieveSimilarRequest(item_id="orphan-item", k=3), timeout=10
        )
    assert len(similar.item_indices) == 3
