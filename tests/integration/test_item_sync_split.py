"""Split mode: AddItems through one gateway; a second gateway, a restarted retrieval and a
ranking service learn the item from the feature service's registry (services.platform.
item_sync) within seconds; ranking scores it by its own row and features, and a ranking service
that has not synced it yet scores it as row 0 (no error). Bad items are refused by the gateway
before anything is registered."""

from __future__ import annotations

import contextlib
import dataclasses
import time

import grpc
import numpy as np
import pytest

from recserve.client import RecserveClient
from recserve.v1 import (
    common_pb2,
    feature_pb2,
    feature_pb2_grpc,
    gateway_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
)
from services.contract.content import has_content_encoder
from services.contract.types import FilterSpec
from services.feature.store import InMemoryFeatureStore
from services.gateway.app import build_pipeline, start_gateway, start_item_sync
from services.platform import convert
from services.platform.reload import ModelHolder
from services.platform.server import create_server
from services.ranking import servicer as ranking_servicer
from services.ranking.config import RankingConfig
from services.ranking.ranker import OnnxRanker
from services.ranking.served import RankingModel
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
    """Another split gateway on the same backends but ranking: a ranking service that syncs
    the registry (every 0.2 s, as this gateway does)."""
    backends = {k: v for k, v in split_stack.items() if k != "gateway"}
    ranking, _, backends["ranking"] = start_ranking(bundle, split_stack["feature"], loop_thread)
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
    loop_thread.run(ranking.aclose())


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
    assert added.row > 1 and not added.item.embedding

    with RecserveClient(split_stack["gateway"], timeout=30) as first:
        assert not first.recommend(user_id, k=50).fallbacks
        assert len(first.similar_items("synced-item", k=5).items) == 5
        # Tags are data: the tag the item brought filters at once.
        tagged = first.recommend(user_id, k=50, include_tags=["x-new"])
        assert [i.item_id for i in tagged.items] == ["synced-item"] and not tagged.fallbacks
        # The stack's ranking service does not sync the registry (a lagging backend): it rates
        # the item as row 0, the unknown item; no error, no fallback.
        (rating,) = first.predict_ratings(user_id, ["synced-item"]).ratings
        assert 1.0 <= rating.rating <= 5.0

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
        np.testing.assert_allclose(
            restarted.added.by_id["synced-item"].vector, vector / np.linalg.norm(vector), 1e-6
        )
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


def test_an_item_registered_while_retrieval_was_down_is_indexed_by_its_sync(
    bundle, split_stack, loop_thread
):
    """Only the feature service took it (as when retrieval was unreachable during AddItems):
    retrieval's own item sync indexes it from the registry (no gateway repair, no proxy)."""
    item = common_pb2.NewItem(item_id="orphan-item", title="Orphan")
    item.embedding.extend([1.0] + [0.0] * (bundle.embedding_dim - 1))
    with grpc.insecure_channel(split_stack["feature"]) as channel:
        features = feature_pb2_grpc.FeatureServiceStub(channel)
        (registered,) = features.AddItems(
            common_pb2.AddItemsRequest(items=[item]), timeout=30
        ).items
        assert registered.row > 0
    server, sync, holder, target = start_retrieval(bundle, split_stack["feature"], loop_thread)
    try:
        with grpc.insecure_channel(target) as channel:
            stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
            similar = wait_for(
                lambda: stub.RetrieveSimilar(
                    retrieval_pb2.RetrieveSimilarRequest(item_id="orphan-item", k=3), timeout=10
                )
            )
        assert len(similar.item_indices) == 3
        assert holder.current.catalog.index("orphan-item") == registered.row
    finally:
        loop_thread.run(sync.stop())
        loop_thread.run(server.stop(None))


def start_ranking(bundle, feature_target: str, loop_thread):
    """A ranking process with the real wiring of services.ranking.served: config from env
    (RECSERVE_FEATURE_ADDR) -> RankingModel -> its item sync (Service.background)."""
    config = RankingConfig.from_env(
        {
            "RECSERVE_FEATURE_ADDR": feature_target,
            "RECSERVE_ITEM_SYNC_S": SYNC_S,
            "RECSERVE_RANKING_DEVICE": "cpu",
        }
    )
    model = RankingModel(config)
    stack = contextlib.AsyncExitStack()

    async def go():
        holder = ModelHolder(model.from_bundle(bundle), bundle.version)
        await stack.enter_async_context(model.item_sync(holder))
        server, port = await create_server(
            ranking_servicer.register(holder), port=0,
            service_names=["recserve.v1.RankingService"],
        )  # fmt: skip
        stack.push_async_callback(server.stop, None)
        return holder, f"127.0.0.1:{port}"

    holder, target = loop_thread.run(go())
    return stack, holder, target


def test_ranking_syncs_an_added_item_and_scores_it_by_its_own_features(
    bundle, split_stack, loop_thread, known_users
):
    """An item added with the vector of a trained item P (P would have been its proxy) but other
    tags: the ranking service learns it from the registry and scores it by its own row, tags
    and vector (as a ranker given them directly does), not as P. A ranking service that has
    not synced it scores it as row 0 (the unknown item), without an error."""
    table = OnnxRanker.from_bundle(bundle, prefer_gpu=False).table
    proxy = 7
    vector = np.asarray(table.vectors_of(np.array([proxy])), dtype=np.float32)[0]
    tags = [t for t in bundle.feature_spec.tags if not table.tags[proxy][
        bundle.feature_spec.tags.index(t)]][:2]  # fmt: skip
    item = common_pb2.NewItem(item_id="ranked-item", title="Ranked", tags=tags)
    item.embedding.extend(vector.tolist())
    with grpc.insecure_channel(split_stack["feature"]) as channel:
        (registered,) = (
            feature_pb2_grpc.FeatureServiceStub(channel)
            .AddItems(common_pb2.AddItemsRequest(items=[item]), timeout=30)
            .items
        )
    row = registered.row
    user = InMemoryFeatureStore.from_bundle(bundle).get_user(known_users[4])
    request = ranking_pb2.RankRequest(
        user=convert.user_state_to_proto(user), item_indices=[row, proxy, 0]
    )

    with grpc.insecure_channel(split_stack["ranking"]) as channel:  # no sync: lagging
        lagging = ranking_pb2_grpc.RankingServiceStub(channel).Rank(request, timeout=30)
    assert lagging.p_interact[0] == lagging.p_interact[2]  # row 0's score

    stack, holder, target = start_ranking(bundle, split_stack["feature"], loop_thread)
    try:
        wait_for(lambda: "ranked-item" in holder.current.items.by_id)
        with grpc.insecure_channel(target) as channel:
            scores = ranking_pb2_grpc.RankingServiceStub(channel).Rank(request, timeout=30)
    finally:
        loop_thread.run(stack.aclose())
    local = OnnxRanker.from_bundle(bundle, prefer_gpu=False)
    local.add_items([row], [tags], (vector / np.linalg.norm(vector)).reshape(1, -1))
    want = local.rank(user, np.array([row, proxy, 0], dtype=np.int64))
    np.testing.assert_allclose(scores.p_interact, want.p_interact, rtol=1e-5)
    np.testing.assert_allclose(scores.rating, want.rating, rtol=1e-5)
    assert abs(scores.p_interact[0] - scores.p_interact[1]) > 1e-6  # not as its former proxy
    assert abs(scores.p_interact[0] - scores.p_interact[2]) > 1e-6  # nor as row 0
