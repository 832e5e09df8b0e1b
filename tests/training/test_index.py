"""FAISS item index: labels are item indices, exact results below the HNSW threshold, tag
centroids."""

from __future__ import annotations

from pathlib import Path

import faiss
import numpy as np
import pytest

from training.index import build_item_index, save_index, tag_centroids


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


def test_large_catalogs_use_hnsw_with_high_recall(embeddings) -> None:
    item_index = build_item_index(embeddings, flat_max_items=100)
    assert item_index.index_type.startswith("IDMap2,HNSW")
    rng = np.random.default_rng(0)
    queries = embeddings[rng.integers(1, len(embeddings), 50)]
    _, labels = item_index.index.search(queries, 20)
    exact = _exact_top_k(embeddings, queries, 20)
    recall = np.mean([len(set(a) & set(b)) / 20 for a, b in zip(labels, exact, strict=True)])
    assert recall >= 0.95


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
