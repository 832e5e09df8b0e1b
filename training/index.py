"""FAISS index over item-tower embeddings, plus the tag centroids served beside it.

Labels are item indices (1..n); row 0 (unknown) is never indexed. The index type is chosen by
catalog size: exact inner-product search below `flat_max_items` (a flat scan of 50k x 64 floats
is ~1 ms per query); above it IVF (inner product), whose per-query cost stays flat as the
catalog grows and which builds in about a minute at 1M items (HNSW takes many minutes there on
two cores; it stays available as `kind="hnsw"`). IVF's nprobe is not a constant: it is the
smallest value whose recall@100 against exact search, on a sample of real queries, reaches
`target_recall`, measured at build time and recorded (ItemIndex.info -> manifest `index`).

Every index is wrapped in IndexIDMap2 so the serving side can add items with add_with_ids.
`faiss.write_index` stores IVF's nprobe in the file, so the retrieval service searches with
the chosen value without any extra setting.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import faiss
import numpy as np

FLAT_MAX_ITEMS = 50_000
HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 128
TARGET_RECALL = 0.95
RECALL_K = 100
RECALL_QUERIES = 1000
# FAISS warns below 39 training points per centroid; 64 keeps k-means stable and the
# training sample (64 * nlist) far below the catalog at 1M items.
IVF_TRAIN_PER_LIST = 64

IndexKind = Literal["auto", "flat", "ivf", "hnsw"]


@dataclass(frozen=True)
class ItemIndex:
    index: faiss.Index
    index_type: str  # e.g. "IDMap2,Flat,IP", "IDMap2,IVF4000,Flat,IP" or "IDMap2,HNSW32,IP"
    info: dict[str, Any] = field(default_factory=dict)  # manifest["index"]: how it was built


def ivf_nlist(n: int) -> int:
    """About 4 * sqrt(n) lists (FAISS's guideline), at least 1 and at most n / 39."""
    return max(1, min(round(4 * math.sqrt(n)), n // 39 or 1))


def recall_at_k(found: np.ndarray, truth: np.ndarray) -> float:
    """Share of the exact top-k labels (int64[Q, k]) that `found` (int64[Q, k']) contains."""
    hits = sum(np.intersect1d(f[f >= 0], t[t >= 0]).size for f, t in zip(found, truth, strict=True))
    return hits / max(1, int(np.count_nonzero(truth >= 0)))


def choose_nprobe(
    ivf: faiss.IndexIVF,
    queries: np.ndarray,
    truth: np.ndarray,
    k: int,
    target: float = TARGET_RECALL,
) -> tuple[int, float, dict[int, float]]:
    """Smallest nprobe whose recall@k on `queries` reaches `target` -> (nprobe, recall, tried).

    Doubling, then bisection between the last failing and the first passing value; recall of
    IVF-Flat never drops when more lists are probed, so the bisection finds the smallest.
    Every list probed (nprobe = nlist) is exact search, so the target is always reachable."""
    tried: dict[int, float] = {}

    def measure(nprobe: int) -> float:
        if nprobe not in tried:
            ivf.nprobe = nprobe
            _, found = ivf.search(queries, k)
            tried[nprobe] = recall_at_k(found, truth)
        return tried[nprobe]

    low, high = 0, 1  # low: largest known failing value (0 = none)
    while measure(high) < target and high < ivf.nlist:
        low, high = high, min(2 * high, ivf.nlist)
    while high - low > 1:
        mid = (low + high) // 2
        if measure(mid) >= target:
            high = mid
        else:
            low = mid
    ivf.nprobe = high
    return high, tried[high], dict(sorted(tried.items()))


def build_item_index(
    item_embeddings: np.ndarray,
    flat_max_items: int = FLAT_MAX_ITEMS,
    *,
    queries: np.ndarray | None = None,
    kind: IndexKind = "auto",
    target_recall: float = TARGET_RECALL,
    seed: int = 0,
) -> ItemIndex:
    """item_embeddings float32[n_items + 1, D] (row 0 unused) -> index labelled 1..n_items.

    queries float32[Q, D]: real query vectors (user-tower outputs) for IVF's nprobe choice;
    without them a sample of item vectors stands in. kind "auto": flat below flat_max_items,
    IVF above."""
    start = time.perf_counter()
    vectors = np.ascontiguousarray(item_embeddings[1:], dtype=np.float32)
    n, dim = vectors.shape
    labels = np.arange(1, n + 1, dtype=np.int64)
    if kind == "auto":
        kind = "flat" if n < flat_max_items else "ivf"
    info: dict[str, Any] = {"kind": kind, "n_items": n}
    if kind == "flat":
        inner: faiss.Index = faiss.IndexFlatIP(dim)
        index_type = "IDMap2,Flat,IP"
    elif kind == "hnsw":
        hnsw = faiss.IndexHNSWFlat(dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        hnsw.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
        hnsw.hnsw.efSearch = HNSW_EF_SEARCH
        inner = hnsw
        index_type = f"IDMap2,HNSW{HNSW_M},IP"
        info.update(m=HNSW_M, ef_construction=HNSW_EF_CONSTRUCTION, ef_search=HNSW_EF_SEARCH)
    elif kind == "ivf":
        nlist = ivf_nlist(n)
        inner = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        n_train = min(n, IVF_TRAIN_PER_LIST * nlist)
        sample = rng.choice(n, size=n_train, replace=False) if n_train < n else np.arange(n)
        inner.train(vectors[np.sort(sample)])
        index_type = f"IDMap2,IVF{nlist},Flat,IP"
        info.update(nlist=nlist, train_size=n_train)
    else:
        raise ValueError(f"unknown index kind {kind!r}")
    index = faiss.IndexIDMap2(inner)
    index.add_with_ids(vectors, labels)
    if kind != "flat":
        info.update(_measure_recall(inner, vectors, queries, target_recall, seed))
    info["build_s"] = round(time.perf_counter() - start, 2)
    info["memory_mb"] = round(faiss.serialize_index(index).nbytes / 2**20, 1)
    return ItemIndex(index, index_type, info)


def _measure_recall(
    inner: faiss.Index,
    vectors: np.ndarray,
    queries: np.ndarray | None,
    target_recall: float,
    seed: int,
) -> dict[str, Any]:
    """recall@RECALL_K of the approximate index against exact search (and IVF's nprobe).

    Searches the index inside the IDMap2 wrapper, whose labels are positions 0..n-1 like the
    exact index's."""
    n, dim = vectors.shape
    if queries is None:
        rng = np.random.default_rng(seed + 1)
        queries = vectors[rng.choice(n, size=min(n, RECALL_QUERIES), replace=False)]
        source = "item vectors"
    else:
        source = "user-tower outputs"
    queries = np.ascontiguousarray(queries[:RECALL_QUERIES], dtype=np.float32)
    k = min(RECALL_K, n)
    exact = faiss.IndexFlatIP(dim)
    exact.add(vectors)
    _, truth = exact.search(queries, k)  # positions 0..n-1, as `inner` labels them
    out: dict[str, Any] = {"recall_k": k, "recall_queries": len(queries), "query_source": source}
    if isinstance(inner, faiss.IndexIVF):
        nprobe, recall, tried = choose_nprobe(inner, queries, truth, k, target_recall)
        out.update(nprobe=nprobe, target_recall=target_recall, recall_by_nprobe=tried)
    else:
        _, found = inner.search(queries, k)
        recall = recall_at_k(found, truth)
    out["recall"] = round(recall, 4)
    return out


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
