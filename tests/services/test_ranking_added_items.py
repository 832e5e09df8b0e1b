"""Ranking's side of items added at runtime (services.ranking.added): the registry applied to
the ranker's item table with the vectors retrieval computes (one function), re-applied only
when something changed, embedded mode sharing the retriever's vectors, schema_version 1."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.contract.added_items import AddedItem, NewItem, assign_rows, item_vectors
from services.contract.errors import FailedPrecondition
from services.feature.store import InMemoryFeatureStore
from services.ranking.added import RankerItems
from services.ranking.ranker import OnnxRanker
from services.retrieval.retriever import Retriever


class HashEncoder:
    """A fake content encoder: a deterministic vector per text (not normalised)."""

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.calls = 0

    def encode(self, texts):
        self.calls += 1
        out = [np.random.default_rng(sum(map(ord, t))).standard_normal(self.dim) for t in texts]
        return np.asarray(out, dtype=np.float32) * 3.0


@pytest.fixture(scope="module")
def user(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    return store.get_user(str(store.users.ids[2]))


def registry(*items: NewItem) -> list[AddedItem]:
    return [AddedItem(i + 1, 0, item, i + 1) for i, item in enumerate(items)]


def ranker_items(bundle, encoder=None) -> RankerItems:
    """A RankerItems over a fresh ranker; `encoder` replaces the bundle's content encoder."""
    items = RankerItems.from_bundle(bundle, OnnxRanker.from_bundle(bundle, prefer_gpu=False))
    items._encoder_fn = lambda: encoder
    return items


def test_the_registry_reaches_the_rankers_table_with_retrievals_vectors(bundle, user):
    dim = bundle.embedding_dim
    tags = bundle.feature_spec.tags
    encoder = HashEncoder(dim)
    explicit = np.linspace(-1, 1, dim).astype(np.float32)
    entries = registry(
        NewItem("by-text", "A film", (tags[0],)),
        NewItem("by-vector", "", (tags[1], tags[2]), embedding=explicit),
    )
    items = ranker_items(bundle, encoder)
    assert asyncio.run(items.apply_registry(entries)) == 2
    n = items.n_base_rows
    rows = np.array([n, n + 1])
    table = items.ranker.table
    assert table.n_rows == n + 2
    # The vectors retrieval indexes for the same entries (the one shared function).
    retriever = Retriever.from_bundle(bundle, encoder=encoder)
    pending = retriever.added.pending(entries)
    added = retriever.add_items(pending)
    np.testing.assert_array_equal(table.vectors_of(rows), np.stack([a.vector for a in added]))
    np.testing.assert_array_equal(
        table.vectors_of(rows), item_vectors([e.item for e in entries], encoder, dim)
    )
    assert table.tags_of(rows)[1].sum() == 2.0
    # Scored by those features: as a ranker given them directly.
    local = OnnxRanker.from_bundle(bundle, prefer_gpu=False)
    local.add_items(rows, [(tags[0],), (tags[1], tags[2])], table.vectors_of(rows))
    np.testing.assert_array_equal(
        items.ranker.rank(user, rows).p_interact, local.rank(user, rows).p_interact
    )
    # Nothing changed: nothing re-encoded; new text: that entry only.
    calls = encoder.calls
    assert asyncio.run(items.apply_registry(entries)) == 0 and encoder.calls == calls
    renamed = registry(NewItem("by-text", "Another film", (tags[0],)), entries[1].item)
    assert items.index_pending(renamed) == 1
    assert not np.array_equal(items.ranker.table.vectors_of(rows[:1]), table.vectors_of(rows[:1]))


def test_an_entry_without_a_vector_is_skipped_not_blocking(bundle):
    """No content encoder: text-only entries are logged and skipped; the others are added."""
    items = ranker_items(bundle)
    dim = bundle.embedding_dim
    entries = registry(NewItem("text", "T"), NewItem("vec", "", embedding=np.ones(dim)))
    assert items.index_pending(entries) == 1
    rows = assign_rows([e.item for e in entries], items.n_base_rows, items.in_base)
    assert set(items.by_id) == {"vec"} and items.by_id["vec"][0] == rows["vec"]
    with pytest.raises(FailedPrecondition):
        item_vectors([NewItem("text", "T")], None, dim)


def test_a_schema_1_ranker_holds_no_added_items(bundle, user):
    ranker = OnnxRanker.from_bundle(bundle, prefer_gpu=False)
    items = RankerItems.from_bundle(bundle, ranker)
    ranker.table = None  # as a schema_version 1 graph: no item table
    dim = bundle.embedding_dim
    entries = registry(NewItem("vec", "", embedding=np.ones(dim)))
    assert items.index_pending(entries) == 0 and not items.by_id
    assert asyncio.run(items.apply_registry(entries)) == 0


def test_embedded_stages_share_the_retrievers_vectors_with_the_ranker(bundle, user):
    from services.gateway.stages.inprocess import build_in_process

    stages = build_in_process(bundle, prefer_gpu=False)
    ranker_items_ = stages.ranking.items
    retriever = stages.retrieval.retriever
    n = retriever.catalog.n_base_rows
    dim = bundle.embedding_dim
    vec = np.linspace(1, 2, dim).astype(np.float32)
    # AddItems path (the gateway calls the retrieval stage).
    asyncio.run(stages.retrieval.add_items([NewItem("a", "A", ("x",), embedding=vec, row=n)]))
    assert ranker_items_.by_id["a"][0] == n
    np.testing.assert_array_equal(
        stages.ranking.ranker.table.vectors_of(np.array([n])), retriever.index.embeddings[[n]]
    )
    # The item sync's path, and its blocking form (a reload's build).
    entries = registry(
        NewItem("a", "A", ("x",), embedding=vec),
        NewItem("b", "B", embedding=-vec),
    )
    asyncio.run(stages.apply_registry(entries))
    assert ranker_items_.by_id["b"][0] == n + 1
    fresh = build_in_process(bundle, prefer_gpu=False)
    fresh.index_pending(entries)
    assert set(fresh.ranking.items.by_id) == {"a", "b"}
    scores = asyncio.run(stages.ranking.rank(user, np.array([n, n + 1, n + 5])))
    assert np.isfinite(scores.p_interact).all()
