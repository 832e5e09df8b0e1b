"""Retrieval of items added at runtime: indexed under registry rows, found by Retrieve for a
user they suit, filtered by tags and availability, similar-item search, the user tower reading
added items by their own features (rows it does not hold as row 0), bad input, gRPC, and hot
reload. No proxies: candidates are the rows themselves."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import numpy as np
import pytest

from recserve.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc
from services.contract.added_items import NewItem
from services.contract.errors import FailedPrecondition, InvalidArgument
from services.contract.types import FilterSpec
from services.feature.store import InMemoryFeatureStore
from services.platform import convert
from services.platform.server import create_server
from services.retrieval.retriever import Retriever
from services.retrieval.servicer import register

SERVICE = "recserve.v1.RetrievalService"


class CopyEncoder:
    """A fake content encoder: an item whose text starts with a bundle item's title gets that
    item's embedding (so it lands on that item); other text gets a hashed vector."""

    def __init__(self, retriever: Retriever) -> None:
        self.dim = retriever.index.embeddings.shape[1]
        self._emb = retriever.index.embeddings.copy()
        self._titles = {
            retriever.catalog.by_index(r).title: r for r in range(1, retriever.catalog.n_items)
        }
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for i, text in enumerate(texts):
            row = next((r for t, r in self._titles.items() if t and text.startswith(t)), None)
            if row is not None:
                out[i] = self._emb[row]
            else:
                rng = np.random.default_rng(abs(hash(text)) % 2**32)
                vec = rng.standard_normal(self.dim).astype(np.float32)
                out[i] = vec / np.linalg.norm(vec)
        return out


@pytest.fixture(scope="module")
def user(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    return store.get_user(str(store.users.ids[1]))


@pytest.fixture
def retriever(bundle) -> Retriever:
    return Retriever.from_bundle(bundle, encoder=None)


def near(retriever: Retriever, user) -> np.ndarray:
    return retriever.user_embedding(user).astype(np.float32)


def test_an_added_item_is_retrieved_for_a_user_it_suits(retriever, user):
    n_rows = retriever.catalog.n_base_rows
    tag = retriever.index.tags[0]
    vec = near(retriever, user)
    (added,) = retriever.add_items(
        [NewItem("new-1", "New film", (tag, "brand-new-tag"), embedding=vec * 3, row=n_rows)]
    )
    trained = retriever.index.embeddings[1:n_rows]
    nearest = int(np.argmax(trained @ vec)) + 1
    assert added.row == n_rows and not hasattr(added, "proxy")
    np.testing.assert_allclose(added.vector, vec / np.linalg.norm(vec), rtol=1e-6)
    found = retriever.retrieve(user, 10)
    assert found.item_indices[0] == n_rows
    assert retriever.catalog.index("new-1") == n_rows
    # Tag filters: a bundle tag works, and so does the tag the added item brought (tags are
    # data: the vocabulary grows); a tag nobody carries is still refused.
    assert n_rows in retriever.retrieve(user, 10, FilterSpec(include_tags=(tag,))).item_indices
    assert n_rows not in retriever.retrieve(user, 10, FilterSpec(exclude_tags=(tag,))).item_indices
    only_new = retriever.retrieve(user, 10, FilterSpec(include_tags=("brand-new-tag",)))
    assert only_new.item_indices.tolist() == [n_rows]
    without = retriever.retrieve(user, 10, FilterSpec(exclude_tags=("brand-new-tag",)))
    assert n_rows not in without.item_indices and without.item_indices.size == 10
    assert "brand-new-tag" in [t for t, _ in retriever.tag_affinities(user, 1000)]
    with pytest.raises(InvalidArgument):
        retriever.retrieve(user, 10, FilterSpec(include_tags=("no-such-tag",)))
    assert (
        n_rows
        not in retriever.retrieve(user, 10, FilterSpec(exclude_items=("new-1",))).item_indices
    )
    # Availability works for added items.
    assert retriever.set_items_available(["new-1"], False) == 1
    assert retriever.index.unavailable == 1
    assert n_rows not in retriever.retrieve(user, 10).item_indices
    retriever.set_items_available(["new-1"], True)
    assert retriever.retrieve(user, 10).item_indices[0] == n_rows
    # Similar items of the added item: its vector is known; never itself.
    similar = retriever.similar("new-1", 5)
    assert similar.item_indices[0] == nearest and n_rows not in similar.item_indices


def test_the_user_tower_reads_an_added_item_in_history_by_its_own_features(retriever, user):
    """The history row is the added row itself (unknown id), with the item's own tags
    (attributes unknown); other tags, or the nearest trained item, give another embedding. A
    row this retriever does not hold (its sync lags) reads as row 0."""
    n_rows = retriever.catalog.n_base_rows
    tags = retriever.index.tags
    retriever.add_items([
        NewItem("h", "x", (tags[0],), embedding=near(retriever, user), row=n_rows),
        NewItem("g", "y", (tags[1], tags[2]), embedding=near(retriever, user), row=n_rows + 1),
    ])  # fmt: skip
    assert retriever.table is not None and retriever.table.n_rows == n_rows + 2
    with_new = dataclasses.replace(user, history=np.r_[n_rows, user.history[:-1]])
    with_other = dataclasses.replace(user, history=np.r_[n_rows + 1, user.history[:-1]])
    trained = retriever.index.embeddings[1:n_rows]
    nearest = int(np.argmax(trained @ near(retriever, user))) + 1
    with_proxy = dataclasses.replace(user, history=np.r_[nearest, user.history[:-1]])
    got = retriever.user_embedding(with_new)
    assert not np.allclose(got, retriever.user_embedding(with_proxy), atol=1e-4)
    assert not np.allclose(got, retriever.user_embedding(with_other), atol=1e-4)
    # The same as feeding the tower by hand: row n_rows, its tags multi-hot, attributes 0.
    feeds = retriever.tower_feeds(with_proxy)
    feeds["history"][0, 0] = n_rows
    feeds["history_tags"][0, 0] = 0.0
    feeds["history_tags"][0, 0, 0] = 1.0
    feeds["history_attrs"][0, 0] = 0
    (want,) = retriever._session.run(["embedding"], feeds)
    np.testing.assert_allclose(got, want[0], rtol=1e-6)
    beyond = dataclasses.replace(user, history=np.r_[n_rows + 5, user.history[:-1]])
    as_unknown = dataclasses.replace(user, history=np.r_[0, user.history[:-1]])
    np.testing.assert_array_equal(
        retriever.user_embedding(beyond), retriever.user_embedding(as_unknown)
    )
    with pytest.raises(InvalidArgument):
        retriever.user_embedding(dataclasses.replace(user, history=np.r_[-1, user.history[1:]]))
    affinities = retriever.tag_affinities(with_new, 3)
    assert len(affinities) == 3


def test_text_goes_through_the_encoder_and_readds_replace_the_vector(bundle, user):
    retriever = Retriever.from_bundle(bundle, encoder=None)
    retriever.added.encoder = CopyEncoder(retriever)
    n_rows = retriever.catalog.n_base_rows
    title = retriever.catalog.by_index(7).title
    (a,) = retriever.add_items([NewItem("t", f"{title} (remastered)", row=n_rows)])
    np.testing.assert_allclose(a.vector, retriever.index.embeddings[7], rtol=1e-6)
    title2 = retriever.catalog.by_index(9).title
    retriever.add_items([NewItem("t", title2, row=n_rows)])  # re-add: new text
    assert retriever.index.index.ntotal == n_rows  # replaced, not duplicated
    np.testing.assert_allclose(
        retriever.index.embeddings[n_rows], retriever.index.embeddings[9], rtol=1e-6
    )


def test_rows_beyond_a_gap_are_allowed_and_the_gap_is_empty(retriever, user):
    n_rows = retriever.catalog.n_base_rows
    retriever.add_items([NewItem("far", "x", embedding=near(retriever, user), row=n_rows + 2)])
    assert retriever.index.n_rows == n_rows + 3 and retriever.index.unavailable == 0
    found = retriever.retrieve(user, 50, FilterSpec(exclude_seen=True))
    assert found.item_indices[0] == n_rows + 2
    assert not {n_rows, n_rows + 1} & set(found.item_indices.tolist())
    assert retriever.catalog.by_index(n_rows).item_id == ""


@pytest.mark.parametrize(
    "make, error",
    [
        (lambda n, d: [NewItem("a", "t", embedding=np.ones(d + 1), row=n)], InvalidArgument),
        (lambda n, d: [NewItem("a", "t", embedding=np.full(d, np.nan), row=n)], InvalidArgument),
        (lambda n, d: [NewItem("a", "t", embedding=np.zeros(d), row=n)], InvalidArgument),
        (lambda n, d: [NewItem("", "t", embedding=np.ones(d), row=n)], InvalidArgument),
        (
            lambda n, d: [NewItem("a", "t", embedding=np.ones(d), row=n)] * 2,
            InvalidArgument,
        ),
        (lambda n, d: [NewItem("a", "t", row=n)], FailedPrecondition),  # no encoder, no vector
        (lambda n, d: [NewItem("a", "t", embedding=np.ones(d), row=3)], InvalidArgument),
        (lambda n, d: [NewItem("a", "t", embedding=np.ones(d))], InvalidArgument),  # no row
    ],
)
def test_bad_input_is_rejected_and_changes_nothing(retriever, make, error):
    before = retriever.index.index.ntotal
    with pytest.raises(error):
        retriever.add_items(make(retriever.catalog.n_base_rows, retriever.added.dim))
    assert retriever.index.index.ntotal == before and not retriever.added.by_id


def test_a_row_held_by_another_item_is_a_conflict(retriever, user):
    n_rows, vec = retriever.catalog.n_base_rows, near(retriever, user)
    retriever.add_items([NewItem("a", "t", embedding=vec, row=n_rows)])
    with pytest.raises(InvalidArgument, match="already holds"):
        retriever.add_items([NewItem("b", "t", embedding=vec, row=n_rows)])


def test_hot_reload_keeps_added_items(bundle, user):
    old = Retriever.from_bundle(bundle, encoder=None)
    old.added.encoder = CopyEncoder(old)
    n_rows = old.catalog.n_base_rows
    title = old.catalog.by_index(11).title
    old.add_items(
        [
            NewItem("by-text", title, row=n_rows),
            NewItem("by-vector", "", ("x",), embedding=near(old, user), row=n_rows + 1),
        ]
    )
    old.set_items_available(["by-text"], False)
    new = Retriever.from_bundle(bundle, encoder=None)
    new.added.encoder = encoder = CopyEncoder(new)
    new.adopt_added(old)
    new.adopt_availability(old)
    assert encoder.calls == 1  # re-encoded from text with the new bundle's encoder
    assert new.catalog.index("by-text") == n_rows
    np.testing.assert_allclose(
        new.added.by_id["by-text"].vector, new.index.embeddings[11], rtol=1e-6
    )
    assert new.catalog.index("by-vector") == n_rows + 1  # no text: its vector travelled
    assert new.retrieve(user, 5).item_indices[0] == n_rows + 1
    assert not new.index.available[n_rows] and new.index.unavailable == 1


def test_add_items_over_grpc(bundle, user):
    retriever = Retriever.from_bundle(bundle, encoder=None)
    n_rows = retriever.catalog.n_base_rows
    vec = near(retriever, user)

    async def scenario():
        server, port = await create_server(register(retriever), port=0, service_names=[SERVICE])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
                item = common_pb2.NewItem(item_id="g", title="G", row=n_rows)
                item.embedding.extend(vec.tolist())
                added = await stub.AddItems(common_pb2.AddItemsRequest(items=[item]), timeout=30)
                found = await stub.Retrieve(
                    retrieval_pb2.RetrieveRequest(user=convert.user_state_to_proto(user), k=5),
                    timeout=30,
                )
                codes = []
                for bad in (common_pb2.NewItem(item_id="h", title="H", row=n_rows + 1),):
                    try:
                        await stub.AddItems(common_pb2.AddItemsRequest(items=[bad]), timeout=30)
                    except grpc.aio.AioRpcError as exc:
                        codes.append(exc.code())
                return added, found, codes
        finally:
            await server.stop(None)

    added, found, codes = asyncio.run(asyncio.wait_for(scenario(), 60))
    assert added.items[0].row == n_rows and not added.items[0].item.embedding
    assert found.item_indices[0] == n_rows
    assert codes == [grpc.StatusCode.FAILED_PRECONDITION]
