"""FAISS index over item-tower embeddings, plus the tag centroids served beside it.

Labels are item indices (1..n); row 0 (unknown) is never indexed. Exact inner-product search
below `flat_max_items`; HNSW (inner product) above, where a flat scan gets too slow per query.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import faiss
import numpy as np

FLAT_MAX_ITEMS = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128


@dataclass(frozen=True)
class ItemIndex:
    index: faiss.Index
    index_type: str  # e.g. "IDMap2,Flat,IP" or "IDMap2,HNSW32,IP"


def build_item_index(
    item_embeddings: np.ndarray, flat_max_items: int = FLAT_MAX_ITEMS
) -> ItemIndex:
    """item_embeddings float32[n_items + 1, D] (row 0 unused) -> index labelled 1..n_items."""
    vectors = np.ascontiguousarray(item_embeddings[1:], dtype=np.float32)
    n, dim = vectors.shape
    labels = np.arange(1, n + 1, dtype=np.int64)
    if n < flat_max_items:
        inner: faiss.Index = faiss.IndexFlatIP(dim)
        index_type = "IDMap2,Flat,IP"
    else:
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        inner = hnsw
        index_type = f"IDMap2,HNSW{HNSW_M},IP"
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, labels)
    return ItemIndex(index, index_type)


def save_index(item_index: ItemIndex, path: Path) -> None:
    faiss.write_index(item_index.index, str(path))


def tag_centroids(item_embeddings: np.ndarray, item_tags: np.ndarray) -> np.ndarray:
    """float32[T, D]: L2-normalised mean embedding of the items carrying each tag.

    item_embeddings float32[I, D], item_tags float32[I, T] multi-hot (row 0 all zeros).
    A tag no item carries gets a zero row.
    """
    sums = item_tags.T.astype(np.float64) @ item_embeddings.astype(np.float64)  # [T, D]
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return np.where(norms > 0, sums / np.maximum(norms, 1e-12), 0.0).astype(np.float32)
