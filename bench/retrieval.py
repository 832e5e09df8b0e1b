"""FAISS index choice at catalog scale: exact (flat) vs HNSW vs IVF on seeded clustered
synthetic embeddings. Per index: build time, memory (serialised size), single-query p50/p99
(one thread, one query at a time, as the retrieval service searches) and recall@k against
exact search."""

from __future__ import annotations

import time

import faiss
import numpy as np

from bench.stages import time_calls
from bench.synthetic import clustered_embeddings, queries


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = sum(len(np.intersect1d(f[f >= 0], t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def compare_indexes(
    n: int = 1_000_000,
    dim: int = 64,
    k: int = 100,
    n_queries: int = 200,
    seed: int = 0,
    threads: int = 2,
    with_hnsw: bool = False,
) -> dict:
    vectors, centroids = clustered_embeddings(n, dim, seed=seed)
    q = queries(centroids, n_queries, seed=seed + 1)
    faiss.omp_set_num_threads(threads)  # building: all cores
    flat = faiss.IndexFlatIP(dim)
    flat.add(vectors)
    _, truth = flat.search(q, k)

    def hnsw():
        index = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 80
        index.add(vectors)
        return index

    def ivf():
        nlist = int(4 * np.sqrt(n))
        quantizer = faiss.IndexFlatIP(dim)
        index = faiss.IndexIVFFlat(quantizer, dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        index.train(vectors[rng.choice(n, size=min(n, 64 * nlist), replace=False)])
        index.add(vectors)
        return index

    def set_ef(ef):
        return lambda index: setattr(index.hnsw, "efSearch", ef)

    def set_nprobe(p):
        return lambda index: setattr(index, "nprobe", p)

    configs = [
        ("Flat", lambda: flat, [("exact", lambda index: None)]),
        ("IVF", ivf, [(f"nprobe={p}", set_nprobe(p)) for p in (8, 16, 32)]),
    ]
    if with_hnsw:  # HNSW's build at 1M takes many minutes on 2 busy cores: opt-in
        configs.append(("HNSW32", hnsw, [(f"efSearch={ef}", set_ef(ef)) for ef in (128, 256)]))
    rows = []
    for name, build, settings in configs:
        t0 = time.perf_counter()
        index = build()
        build_s = 0.0 if name == "Flat" else time.perf_counter() - t0
        memory_mb = faiss.serialize_index(index).nbytes / 2**20
        for label, apply in settings:
            apply(index)
            faiss.omp_set_num_threads(threads)
            _, found = index.search(q, k)
            faiss.omp_set_num_threads(1)  # serving: one query, one thread
            counter = iter(range(10**9))
            timing = time_calls(
                lambda index=index, c=counter: index.search(q[next(c) % n_queries][None, :], k),
                n=n_queries if name != "Flat" else 30,
                warmup=5,
            )
            rows.append(
                {
                    "index": f"{name} {label}".strip(),
                    "recall_at_k": round(_recall(found, truth), 4),
                    "build_s": round(build_s, 1),
                    "memory_mb": round(memory_mb, 1),
                    **timing,
                }
            )
    return {"n_items": n, "dim": dim, "k": k, "queries": n_queries, "rows": rows}
