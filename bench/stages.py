"""In-process stage costs on a bundle: the floor under any serving topology.

feature lookup (1 user + N items), user tower, FAISS search for N candidates, Recommend's
retrieval call (the user's seen items excluded), one user's value score without the cache,
ranking N candidates (one user, and batched over B users as the ranking service's
micro-batcher does;
rank_N rates every candidate, as PredictRatings and a bundle without rater.onnx do, and
rank_N_rate20 rates only the top 20 by P(interact), as Recommend k=20 asks: with rater.onnx
the rating model runs on 20 candidates, a single-graph bundle still rates all; for a bundle
with rater.onnx, rank_N_single_graph is the same bundle's two graphs merged into one, the
layout before rater.onnx: today's cost, same weights, same run),
and the whole embedded Recommend pipeline without gRPC.
Each is timed call by call (perf_counter) after a warm-up; p50/p99 in milliseconds.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from services.contract.bundle import Bundle


def time_calls(fn: Callable[[], object], n: int = 2000, warmup: int = 50) -> dict[str, float]:
    """p50/p99/mean wall time of one call, and cpu_ms_mean: this process's CPU time (every
    thread: ONNX Runtime's and FAISS's pools included) over the timed calls / n."""
    for _ in range(warmup):
        fn()
    samples = np.empty(n)
    cpu0 = time.process_time()
    for i in range(n):
        t0 = time.perf_counter()
        fn()
        samples[i] = time.perf_counter() - t0
    cpu_ms = (time.process_time() - cpu0) * 1000 / n
    ms = samples * 1000
    return {
        "n": n,
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "mean_ms": round(float(ms.mean()), 4),
        "cpu_ms_mean": round(cpu_ms, 4),
    }


def stage_costs(
    bundle: Bundle, n_candidates: int = 200, n: int = 2000, batch: int = 8
) -> dict[str, dict]:
    from services.contract.types import FilterSpec
    from services.feature.store import InMemoryFeatureStore
    from services.ranking.ranker import OnnxRanker
    from services.retrieval.retriever import Retriever
    from services.uservalue.scorer import UserValueScorer

    store = InMemoryFeatureStore.from_bundle(bundle)
    retriever = Retriever.from_bundle(bundle)
    ranker = OnnxRanker.from_bundle(bundle, prefer_gpu=False)
    rng = np.random.default_rng(0)
    users = store.users.ids
    n_items = len(store.catalog) - 1
    item_ids = store.catalog.vocab.ids
    pick = lambda: str(users[rng.integers(len(users))])  # noqa: E731
    cands = rng.choice(np.arange(1, n_items + 1), size=min(n_candidates, n_items), replace=False)
    cand_ids = [str(item_ids[i - 1]) for i in cands.tolist()]
    state = store.get_user(pick())
    query = retriever.user_embedding(state)
    unseen = FilterSpec(exclude_seen=True)
    uncached = UserValueScorer.from_bundle(bundle, cache_users=0)
    out = {
        "feature_lookup_user": time_calls(lambda: store.get_user(pick()), n),
        f"feature_lookup_user_plus_{len(cands)}_items": time_calls(
            lambda: (store.get_user(pick()), store.catalog.indices(cand_ids)), n
        ),
        "user_tower": time_calls(lambda: retriever.user_embedding(state), n),
        f"faiss_search_{n_candidates}": time_calls(
            lambda: retriever.index.search(query, n_candidates), n
        ),
        f"user_tower_plus_search_{n_candidates}": time_calls(
            lambda: retriever.retrieve(state, n_candidates), n
        ),
        # Recommend's retrieval call: the user's seen items dropped (users drawn at random).
        f"retrieve_exclude_seen_{n_candidates}": time_calls(
            lambda: retriever.retrieve(store.get_user(pick()), n_candidates, unseen), n
        ),
        # A user whose value score is not cached: features + user_value.onnx for one user.
        "uservalue_uncached": time_calls(lambda: uncached.score([pick()]), n),
        f"rank_{len(cands)}": time_calls(lambda: ranker.rank(state, cands, 0, query), n),
        # Recommend's call: the top 20 rated, the user's embedding from retrieval (a ranker.onnx
        # that takes user_embedding; an older one ignores it and runs its tower inside).
        f"rank_{len(cands)}_rate20": time_calls(lambda: ranker.rank(state, cands, 20, query), n),
    }
    if ranker.takes_query:  # a call without retrieval's embedding: user_tower.onnx runs first
        out[f"rank_{len(cands)}_rate20_own_tower"] = time_calls(
            lambda: ranker.rank(state, cands, 20), n
        )
    single = single_graph_ranker(bundle, ranker)
    if single is not None:
        out[f"rank_{len(cands)}_single_graph"] = time_calls(
            lambda: single.rank(state, cands, 0, query), n
        )
    out["pipeline_recommend_k20"] = _pipeline_recommend(bundle, pick, n_candidates, n)
    if batch > 1:  # what the micro-batcher does with `batch` concurrent requests
        prepared = [ranker.prepare(store.get_user(pick()), cands) for _ in range(batch)]
        res = time_calls(lambda: ranker.rank_prepared(prepared), max(n // batch, 50))
        res["per_request_ms"] = round(res["mean_ms"] / batch, 4)
        out[f"rank_{len(cands)}_batch_{batch}"] = res
    return out


def merge_ranking_graphs(ranker_path: Path, rater_path: Path):
    """ranker.onnx (p_interact) + rater.onnx (p_positive, rating) of one bundle -> one ONNX
    model with the inputs of both and the outputs p_positive, rating, p_interact: the
    single-graph layout of a bundle without rater.onnx (ServedRanker as one graph), with the
    same weights. The rater's node and initializer names get a "rater/" prefix."""
    import onnx
    from onnx import compose

    ranker = onnx.load(str(ranker_path))
    rater = compose.add_prefix(
        onnx.load(str(rater_path)), "rater/", rename_inputs=False, rename_outputs=False
    )
    own = {i.name for i in ranker.graph.input}
    graph = onnx.helper.make_graph(
        [*rater.graph.node, *ranker.graph.node],
        "ranker",
        [*ranker.graph.input, *(i for i in rater.graph.input if i.name not in own)],
        [*rater.graph.output, *ranker.graph.output],
        initializer=[*rater.graph.initializer, *ranker.graph.initializer],
    )
    model = onnx.helper.make_model(graph, opset_imports=ranker.opset_import)
    model.ir_version = ranker.ir_version
    onnx.checker.check_model(model)
    return model


def single_graph_ranker(bundle: Bundle, ranker):
    """For a bundle with rater.onnx: an OnnxRanker over its merged single graph
    (merge_ranking_graphs), on the same item table and CPU; None for a single-graph bundle."""
    import onnx

    from services.contract.onnx import create_session
    from services.ranking.ranker import RATER_FILE, OnnxRanker

    if not ranker.has_rater:
        return None
    model = merge_ranking_graphs(bundle.path("ranker.onnx"), bundle.path(RATER_FILE))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "ranker.onnx"
        onnx.save(model, str(path))
        session, provider = create_session(path, prefer_gpu=False)
    return OnnxRanker(
        session,
        ranker.inputs,
        bundle_version=ranker.bundle_version,
        provider=provider,
        max_candidates=ranker.max_candidates,
        table=ranker.table,
        tower=ranker.tower,
    )


def _pipeline_recommend(
    bundle: Bundle, pick: Callable[[], str], n_candidates: int, n: int
) -> dict[str, float]:
    """The whole embedded Recommend path (features -> retrieval ∥ user value -> ranking ->
    top 20), called in-process without gRPC: what the gateway costs beyond its stages."""
    import asyncio
    from dataclasses import replace

    from services.contract.types import FilterSpec
    from services.feature.config import DurabilitySettings
    from services.gateway.app import build_pipeline
    from services.gateway.config import GatewaySettings
    from services.gateway.stages.inprocess import build_in_process

    settings = GatewaySettings.from_env({"RECSERVE_MODE": "embedded"})
    settings = replace(settings, limits=replace(settings.limits, candidates=n_candidates))
    # No feedback log: Recommend never writes, and the log's lock belongs to real services.
    stages = build_in_process(bundle, prefer_gpu=False, durability=DurabilitySettings(log=None))
    pipeline = build_pipeline(settings, bundle, stages)
    loop = asyncio.new_event_loop()
    filters = FilterSpec(exclude_seen=True)
    try:
        return time_calls(
            lambda: loop.run_until_complete(pipeline.recommend(pick(), 20, filters)), n
        )
    finally:
        loop.close()
