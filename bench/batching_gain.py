"""What the ranking batches save, in process, C requests gathered at once, interleaved rounds:

- "embedded": the embedded pipeline (Recommend k, N candidates), CPU per request with batching
  off (max batch 1: each request's user-tower and ranker calls alone) and on (shared user-tower
  calls, services.platform.loop_batching, and shared ranker calls, RankBatching);
- "ranking service": Rank calls alone (N candidates, k rated), the worker-task batcher
  (RankBatcher, inline) against RankBatching, what the ranking service now uses on CPU.

    python -m bench.batching_gain --bundle artifacts/LATEST [--concurrency 1,2,4,8] \
        [--rounds 5] [--n 2000]

Prints one JSON line per (part, concurrency): the median CPU ms per request of each variant,
their ratio, and the ranker calls (and, embedded, user-tower calls) per request of the batching
variant.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np


def _compare(
    loop: asyncio.AbstractEventLoop,
    variants: dict[str, Callable[[int], Coroutine[Any, Any, None]]],
    at_once: int,
    rounds: int,
    n: int,
) -> dict[str, float]:
    """variants: name -> one request (its index) as a coroutine. -> median CPU ms per request
    of each, over `rounds` interleaved rounds of n requests, `at_once` gathered at a time."""

    async def run(one, count: int) -> None:
        for start in range(0, count, at_once):
            await asyncio.gather(*(one(start + j) for j in range(at_once)))

    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(rounds):
        for name, one in variants.items():
            loop.run_until_complete(run(one, max(n // 10, at_once)))  # warm-up
            start = time.process_time()
            loop.run_until_complete(run(one, n))
            cpu[name].append((time.process_time() - start) * 1e3 / n)
    return {name: float(np.median(v)) for name, v in cpu.items()}


def main(argv: list[str] | None = None) -> None:
    from services.contract.bundle import Bundle
    from services.contract.types import FilterSpec
    from services.feature.config import DurabilitySettings
    from services.feature.store import InMemoryFeatureStore
    from services.gateway.app import build_pipeline
    from services.gateway.config import GatewaySettings
    from services.gateway.stages.inprocess import (
        InProcessRanking,
        InProcessRetrieval,
        build_in_process,
    )
    from services.ranking.batcher import RankBatcher, RankBatching

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="bundle dir (or artifacts/LATEST)")
    p.add_argument("--concurrency", default="1,2,4,8")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=2000, help="requests per round and variant")
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("-k", type=int, default=20)
    args = p.parse_args(argv)

    bundle = Bundle.load(args.bundle)
    settings = GatewaySettings.from_env({"RECSERVE_MODE": "embedded"})
    settings = replace(settings, limits=replace(settings.limits, candidates=args.candidates))
    stages = build_in_process(bundle, prefer_gpu=False, durability=DurabilitySettings(log=None))
    ranker = stages.ranking.ranker
    ranking_alone = InProcessRanking(ranker, None, max_batch=1)
    towers_alone = InProcessRetrieval(stages.retrieval.retriever, ranking_alone, batched=False)
    alone = replace(stages, ranking=ranking_alone, retrieval=towers_alone)
    towers = stages.retrieval.towers
    off, on = build_pipeline(settings, bundle, alone), build_pipeline(settings, bundle, stages)
    store = InMemoryFeatureStore.from_bundle(bundle)
    users = [str(u) for u in store.users.ids.tolist()]
    filters = FilterSpec(exclude_seen=True)
    rng = np.random.default_rng(0)
    states = [store.get_user(u) for u in users[:64]]
    n_rows = ranker.n_item_rows
    cands = [
        rng.choice(np.arange(1, n_rows), size=min(args.candidates, n_rows - 1), replace=False)
        for _ in states
    ]

    loop = asyncio.new_event_loop()
    try:
        worker = RankBatcher(ranker, max_batch=16, inline=True)
        leader = RankBatching(ranker, max_batch=16)
        embedded = stages.ranking.batching
        parts = {
            "embedded": (
                {
                    "off": lambda i: off.recommend(users[i % len(users)], args.k, filters),
                    "on": lambda i: on.recommend(users[i % len(users)], args.k, filters),
                },
                embedded,
            ),
            "ranking service": (
                {
                    "worker": lambda i: worker.rank(states[i % 64], cands[i % 64], args.k),
                    "leader": lambda i: leader.rank(states[i % 64], cands[i % 64], args.k),
                },
                leader,
            ),
        }
        for part, (variants, counted) in parts.items():
            for at_once in (int(c) for c in args.concurrency.split(",")):
                calls0, requests0 = counted.calls, counted.requests
                tower_calls0, tower_requests0 = towers.calls, towers.requests
                med = _compare(loop, variants, at_once, args.rounds, args.n)
                (a, b) = variants
                requests = counted.requests - requests0
                row = {"part": part, "concurrency": at_once}
                row.update({f"{name}_cpu_ms": round(v, 4) for name, v in med.items()})
                row[f"{b}_over_{a}"] = round(med[b] / med[a], 3)
                row["ranker_calls_per_request"] = round(
                    (counted.calls - calls0) / max(requests, 1), 3
                )
                if part == "embedded":
                    row["tower_calls_per_request"] = round(
                        (towers.calls - tower_calls0) / max(towers.requests - tower_requests0, 1),
                        3,
                    )
                print(json.dumps(row))
        loop.run_until_complete(worker.close())
    finally:
        loop.close()


if __name__ == "__main__":
    main()
