"""CandidateIndex and Retriever on a real bundle: filters are applied inside the search."""

from __future__ import annotations

import dataclasses

import faiss
import numpy as np
import pytest

from services.contract.errors import InvalidArgument, NotFound
from services.contract.features import pad_history
from services.contract.types import FilterSpec
from services.feature.store import InMemoryFeatureStore
from services.retrieval.index import CandidateIndex
from services.retrieval.retriever import Retriever
from training.index import build_item_index, save_index


def _with_ivf(retriever: Retriever, tmp_dir) -> Retriever:
    """The same retriever over an IVF index (training.index above the flat threshold), saved
    and read back as the service reads items.faiss, so the stored nprobe is what it uses."""
    item_index = build_item_index(retriever.index.embeddings, flat_max_items=100)
    save_index(item_index, tmp_dir / "items.faiss")
    old = retriever.index
    item_tags = [retriever.catalog.by_index(row).tags for row in range(old.n_rows)]
    retriever.index = CandidateIndex.load(
        tmp_dir / "items.faiss", old.embeddings, old.tags, item_tags
    )
    return retriever


@pytest.fixture(
    scope="module", params=[0, 1_000_000, "ivf"], ids=["flat-scan", "exact", "ivf-selector"]
)
def retriever(bundle, request, tmp_path_factory) -> Retriever:
    if request.param == "ivf":
        made = Retriever.from_bundle(bundle, max_k=200)
        return _with_ivf(made, tmp_path_factory.mktemp("ivf"))
    return Retriever.from_bundle(bundle, exact_below=request.param, max_k=200)


@pytest.fixture(scope="module")
def user(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    busiest = max(store.users.ids.tolist(), key=lambda u: store.get_user(u).event_count)
    return store.get_user(busiest)


def _tag_sets(retriever, indices):
    return [set(retriever.catalog.by_index(i).tags) for i in indices.tolist()]


def _rare_tag(retriever) -> str:
    counts = retriever.index.tag_masks.sum(axis=1)
    return retriever.index.tags[int(np.argmin(np.where(counts >= 12, counts, 1 << 30)))]


def test_unfiltered_results_are_sorted_and_unique(retriever, user):
    found = retriever.retrieve(user, 20)
    assert len(found) == 20
    assert np.all(np.diff(found.scores) <= 1e-6)
    assert len(set(found.item_indices.tolist())) == 20 and (found.item_indices > 0).all()


def test_include_tag_still_returns_k_items_all_tagged(retriever, user):
    tag = _rare_tag(retriever)
    found = retriever.retrieve(user, 10, FilterSpec(include_tags=(tag,)))
    assert len(found) == 10
    assert all(tag in tags for tags in _tag_sets(retriever, found.item_indices))


def test_exclude_tags_are_never_returned(retriever, user):
    banned = retriever.index.tags[:2]
    found = retriever.retrieve(user, 30, FilterSpec(exclude_tags=banned))
    assert len(found) == 30
    assert not any(set(banned) & tags for tags in _tag_sets(retriever, found.item_indices))


def test_exclude_seen_drops_every_seen_item(retriever, user):
    k = min(50, retriever.index.n_rows - 1 - user.seen.size)
    found = retriever.retrieve(user, k, FilterSpec(exclude_seen=True))
    assert len(found) == k
    assert not np.isin(found.item_indices, user.seen).any()


def test_exclude_items_are_dropped_and_replaced(retriever, user):
    top = retriever.retrieve(user, 5)
    dropped = retriever.catalog.vocab.ids_of(top.item_indices[:2])
    found = retriever.retrieve(user, 5, FilterSpec(exclude_items=tuple(dropped)))
    assert len(found) == 5
    assert not np.isin(found.item_indices, top.item_indices[:2]).any()
    np.testing.assert_array_equal(found.item_indices[:3], top.item_indices[2:])


def test_filtered_search_matches_exact_scoring(retriever, user):
    tag = _rare_tag(retriever)
    found = retriever.retrieve(user, 10, FilterSpec(include_tags=(tag,)))
    rows = np.flatnonzero(retriever.index.tag_mask([tag]))
    scores = retriever.index.embeddings[rows] @ retriever.user_embedding(user)
    np.testing.assert_allclose(found.scores, np.sort(scores)[::-1][:10], rtol=1e-4, atol=1e-5)


def test_unknown_tag_is_invalid(retriever, user):
    with pytest.raises(InvalidArgument, match="unknown tags"):
        retriever.retrieve(user, 5, FilterSpec(include_tags=("no-such-tag",)))


@pytest.mark.parametrize("k", [0, -1, 201])
def test_k_out_of_range_is_invalid(retriever, user, k):
    with pytest.raises(InvalidArgument):
        retriever.retrieve(user, k)


def test_similar_excludes_the_item_itself(retriever):
    item_id = retriever.catalog.vocab.ids[0]
    found = retriever.similar(item_id, 10)
    assert len(found) == 10
    assert retriever.catalog.index(item_id) not in found.item_indices


def test_similar_unknown_item_is_not_found(retriever):
    with pytest.raises(NotFound):
        retriever.similar("no-such-item", 10)


def test_tag_affinities_are_a_distribution(retriever, user):
    pairs = retriever.tag_affinities(user, len(retriever.index.tags))
    affinities = [a for _, a in pairs]
    assert sum(affinities) == pytest.approx(1.0, abs=1e-5)
    assert affinities == sorted(affinities, reverse=True)


def test_cold_user_tag_affinities_follow_popularity(retriever, bundle):
    cold = InMemoryFeatureStore.from_bundle(bundle).get_user("nobody-ever")
    pairs = retriever.tag_affinities(cold, 3)
    popularity = retriever.index.tag_masks @ retriever.catalog.popularity
    assert pairs[0][0] == retriever.index.tags[int(np.argmax(popularity))]


def test_ivf_filtered_search_uses_the_stored_nprobe(bundle, tmp_path):
    retriever = _with_ivf(Retriever.from_bundle(bundle, max_k=200), tmp_path)
    ivf = faiss.extract_index_ivf(retriever.index.index)
    assert 1 < ivf.nprobe < ivf.nlist  # chosen at build time, read back from items.faiss
    eligible = np.ones(retriever.index.n_rows, dtype=bool)
    selector = faiss.IDSelectorBitmap(eligible.size, faiss.swig_ptr(np.packbits(eligible)))
    params = retriever.index._params(selector, 10)
    assert isinstance(params, faiss.SearchParametersIVF) and params.nprobe == ivf.nprobe


def _masked(retriever, query, k, excluded):
    """The selector path's answer (the mask over every row), for comparison."""
    index = retriever.index
    return index.search(query, k, index.eligible(FilterSpec(), np.asarray(excluded)))


@pytest.mark.parametrize("n_excluded", [0, 1, 25, 120])
def test_search_excluding_returns_what_the_mask_search_returns(retriever, user, n_excluded):
    """Dropping rows from an over-fetched unfiltered search gives the selector search's items
    and scores (flat, exact and IVF indexes alike), and never a dropped row."""
    query = retriever.user_embedding(user)
    rng = np.random.default_rng(n_excluded)
    top = retriever.index.search(query, 150).item_indices
    excluded = rng.choice(top, size=n_excluded, replace=False) if n_excluded else top[:0]
    excluded = np.concatenate((excluded, excluded[:3], [0, retriever.index.n_rows + 5]))
    for k in (10, 150):
        fast = retriever.index.search_excluding(query, k, excluded)
        if n_excluded > k and not retriever.index.scans:
            assert fast is None  # more rows dropped than k: the mask path
            continue
        slow = _masked(retriever, query, k, excluded)
        assert fast is not None and len(fast) == k
        assert not np.isin(fast.item_indices, excluded).any()
        np.testing.assert_array_equal(fast.item_indices, slow.item_indices)
        np.testing.assert_allclose(fast.scores, slow.scores, rtol=1e-6)


@pytest.mark.parametrize("kind", ["flat", "ivf"])
def test_unavailable_items_are_never_returned_by_the_shortcut(bundle, tmp_path, kind):
    """An approximate index leaves unavailable items to the mask path (None); an exact one
    masks them in its scan."""
    retriever = Retriever.from_bundle(bundle, max_k=200)
    if kind == "ivf":
        retriever = _with_ivf(retriever, tmp_path)
    query = retriever.index.embeddings[1]
    assert retriever.index.search_excluding(query, 10, np.array([2, 3])) is not None
    gone = retriever.index.search(query, 3).item_indices
    retriever.index.set_available(gone, False)
    fast = retriever.index.search_excluding(query, 10, np.array([2, 3]))
    if kind == "ivf":
        assert fast is None
    else:
        assert len(fast) == 10 and not np.isin(fast.item_indices, [*gone, 2, 3]).any()
    found = retriever.similar(retriever.catalog.vocab.ids[0], 10)
    assert not np.isin(found.item_indices, gone).any()


def test_exclude_seen_answer_is_the_masked_answer(retriever, user):
    """Recommend's usual query (exclude seen, no tags) takes the shortcut; its answer equals
    the eligibility mask's."""
    k = min(100, retriever.index.n_rows - 1 - user.seen.size)
    found = retriever.retrieve(user, k, FilterSpec(exclude_seen=True))
    slow = _masked(retriever, retriever.user_embedding(user), k, user.seen)
    np.testing.assert_array_equal(found.item_indices, slow.item_indices)


def test_flat_index_scan_equals_faiss_flat_search(retriever, user):
    """The numpy scan of an exact index returns FAISS's flat search (items and scores), with
    and without a mask."""
    if not retriever.index.scans:
        pytest.skip("approximate index: FAISS searches it")
    index = retriever.index
    query = retriever.user_embedding(user)
    scores, labels = index.index.search(query[None, :], 60)
    found = index.search(query, 60)
    np.testing.assert_array_equal(found.item_indices, labels[0])
    np.testing.assert_allclose(found.scores, scores[0], rtol=1e-5, atol=1e-6)
    mask = index.available.copy()
    mask[labels[0][::2]] = False
    masked = index.search(query, 30, mask)
    np.testing.assert_array_equal(masked.item_indices, labels[0][1::2][:30])


def test_exclude_seen_drops_history_items_outside_seen(retriever, user):
    """A request's recent items are in the history (UserState.seen_items): excluded too, as the
    gateway's own check would, since an in-process answer is not checked again."""
    top = retriever.retrieve(user, 10, FilterSpec(exclude_seen=True)).item_indices
    history = np.concatenate((top[:3], user.history[user.history > 0]))[: user.history.size]
    recent = dataclasses.replace(user, history=pad_history(history, user.history.size))
    found = retriever.retrieve(recent, 10, FilterSpec(exclude_seen=True))
    assert not np.isin(found.item_indices, top[:3]).any()
    assert not np.isin(found.item_indices, recent.seen_items()).any()
