"""FAISS item index: labels are item indices, exact results below the flat threshold, IVF
above it with the smallest nprobe that meets the recall target (measured, recorded), tag
centroids."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from bench.synthetic import clustered_embeddings, queries
from training.index import (
    build_item_index,
    choose_nprobe,
    ivf_nlist,
    recall_at_k,
    save_index,
    tag_centroids,
)


@pytest.fixture(scope="module")
def embeddings(tiny_bundle: Path) -> np.ndarray:
    """Real item-tower embeddings of the tiny bundle, float32[n_items + 1, D]."""
    return np.load(tiny_bundle / "item_embeddings.npy", allow_pickle=False)


def _exact_top_k(embeddings: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    scores = queries @ embeddings[1:].T
    return np.argsort(-scores, axis=1, kind="stable")[:, :k] + 1  # row r of [1:] is item r + 1


def test_labels_are_item_indices_one_to_n(embeddings) -> None:
    index = build_item_index(embeddings).index
    assert index.ntotal == len(embeddings) - 1
    labels = faiss.vector_to_array(index.id_map)
    np.testing.assert_array_equal(labels, np.arange(1, len(embeddings)))
    np.testing.assert_array_equal(index.reconstruct(7), embeddings[7])


def test_flat_index_returns_the_exact_inner_product_top_k(embeddings) -> None:
    item_index = build_item_index(embeddings)
    assert item_index.index_type == "IDMap2,Flat,IP"
    queries = embeddings[[5, 50, 500]]
    scores, labels = item_index.index.search(queries, 10)
    np.testing.assert_array_equal(labels, _exact_top_k(embeddings, queries, 10))
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)  # an item is its own best match


def _recall(index: faiss.Index, embeddings: np.ndarray, queries: np.ndarray, k: int) -> float:
    _, labels = index.search(queries, k)
    exact = _exact_top_k(embeddings, queries, k)
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(labels, exact, strict=True)]))


def test_hnsw_is_still_available_with_high_recall(embeddings) -> None:
    item_index = build_item_index(embeddings, kind="hnsw")
    assert item_index.index_type.startswith("IDMap2,HNSW")
    rng = np.random.default_rng(0)
    queries = embeddings[rng.integers(1, len(embeddings), 50)]
    assert _recall(item_index.index, embeddings, queries, 20) >= 0.95
    assert item_index.info["recall"] >= 0.9 and item_index.info["build_s"] >= 0


@pytest.fixture(scope="module")
def clustered() -> tuple[np.ndarray, np.ndarray]:
    """(item embeddings float32[n + 1, D] with row 0 zeros, queries near the clusters)."""
    vectors, centroids = clustered_embeddings(8000, 32, clusters=40, seed=3)
    emb = np.vstack([np.zeros((1, 32), np.float32), vectors])
    return emb, queries(centroids, 300, seed=4)


def test_large_catalogs_use_ivf_with_the_recorded_recall(clustered) -> None:
    emb, q = clustered
    item_index = build_item_index(emb, flat_max_items=1000, queries=q)
    info = item_index.info
    assert item_index.index_type == f"IDMap2,IVF{info['nlist']},Flat,IP"
    assert info["kind"] == "ivf" and info["query_source"] == "user-tower outputs"
    assert info["nlist"] == ivf_nlist(8000) == 8000 // 39  # 4 sqrt(n) capped: >= 39 per list
    assert ivf_nlist(1_000_000) == 4000
    ivf = faiss.extract_index_ivf(item_index.index)
    assert ivf.nprobe == info["nprobe"] < info["nlist"]
    # Re-measured independently (numpy exact top-k, through the IDMap2 labels): what it records.
    recall = _recall(item_index.index, emb, q, 100)
    assert recall == pytest.approx(info["recall"], abs=1e-4)
    assert recall >= info["target_recall"] == 0.95
    # ... and nprobe is the smallest value that gets there.
    ivf.nprobe = info["nprobe"] - 1
    assert _recall(item_index.index, emb, q, 100) < 0.95
    assert info["memory_mb"] > 0 and info["build_s"] >= 0


def test_ivf_nprobe_survives_save_and_load(clustered, tmp_path) -> None:
    emb, q = clustered
    item_index = build_item_index(emb, flat_max_items=1000, queries=q)
    save_index(item_index, tmp_path / "items.faiss")
    loaded = faiss.read_index(str(tmp_path / "items.faiss"))
    assert faiss.extract_index_ivf(loaded).nprobe == item_index.info["nprobe"]
    np.testing.assert_array_equal(
        loaded.search(q[:5], 20)[1], item_index.index.search(q[:5], 20)[1]
    )


def test_ivf_without_queries_measures_on_item_vectors(clustered) -> None:
    emb, _ = clustered
    info = build_item_index(emb, flat_max_items=1000).info
    assert info["query_source"] == "item vectors" and info["recall"] >= 0.95


def test_choose_nprobe_reaches_exact_search_at_worst() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((2000, 16)).astype(np.float32)  # no structure: hard for IVF
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(16), 16, 8, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors)
    ivf.add(vectors)
    exact = faiss.IndexFlatIP(16)
    exact.add(vectors)
    q = rng.standard_normal((50, 16)).astype(np.float32)
    truth = exact.search(q, 100)[1]
    nprobe, recall, tried = choose_nprobe(ivf, q, truth, 100, target=1.0)
    assert recall == 1.0 and nprobe <= 8 and ivf.nprobe == nprobe
    assert all(r < 1.0 for p, r in tried.items() if p < nprobe)
    assert recall_at_k(truth, truth) == 1.0


def test_saved_index_reads_back_with_the_same_results(embeddings, tmp_path) -> None:
    item_index = build_item_index(embeddings)
    save_index(item_index, tmp_path / "items.faiss")
    loaded = faiss.read_index(str(tmp_path / "items.faiss"))
    queries = embeddings[[1, 2]]
    np.testing.assert_array_equal(
        loaded.search(queries, 5)[1], item_index.index.search(queries, 5)[1]
    )


def test_tag_centroids_are_normalised_means_of_tagged_items() -> None:
    emb = np.array([[0, 0], [1, 0], [0, 1], [1, 1]], dtype=np.float32)
    tags = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], dtype=np.float32)
    centroids = tag_centroids(emb, tags)
    np.testing.assert_allclose(centroids[0], [np.sqrt(0.5), np.sqrt(0.5)], atol=1e-6)
    np.testing.assert_allclose(centroids[1], [1 / np.sqrt(5), 2 / np.sqrt(5)], atol=1e-6)
    np.testing.assert_array_equal(centroids[2], [0, 0])  # a tag no item carries
