"""Seeded synthetic item embeddings for scale tests: clustered, like a trained item tower's
(uniform random vectors are unrealistically hard for approximate search), L2-normalised.

Users' query vectors come from the same mixture (a user sits near the items they like)."""

from __future__ import annotations

import numpy as np


def clustered_embeddings(
    n: int, dim: int = 64, *, clusters: int = 1000, spread: float = 0.35, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """-> (vectors float32[n, dim], centroids float32[clusters, dim]); cluster sizes Zipf-like."""
    vectors, centroids, _ = clustered_with_assignment(
        n, dim, clusters=clusters, spread=spread, seed=seed
    )
    return vectors, centroids


def clustered_with_assignment(
    n: int, dim: int = 64, *, clusters: int = 1000, spread: float = 0.35, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """clustered_embeddings plus each vector's cluster, int64[n] (cluster 0 the largest)."""
    rng = np.random.default_rng(seed)
    centroids = rng.standard_normal((clusters, dim)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    weights = 1.0 / np.arange(1, clusters + 1) ** 0.8
    assign = rng.choice(clusters, size=n, p=weights / weights.sum())
    vectors = centroids[assign]
    vectors += rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.ascontiguousarray(vectors, dtype=np.float32), centroids, assign.astype(np.int64)


def queries(centroids: np.ndarray, n: int, *, spread: float = 0.5, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    dim = centroids.shape[1]
    q = centroids[rng.integers(len(centroids), size=n)]
    q = q + rng.standard_normal((n, dim)).astype(np.float32) * (spread / np.sqrt(dim))
    return np.ascontiguousarray(q / np.linalg.norm(q, axis=1, keepdims=True), dtype=np.float32)
