"""What embedded mode's ranking batches save: the embedded pipeline in process, C requests
gathered at once, CPU per request with batching off (max batch 1) and on, interleaved rounds.

    python -m bench.batching_gain --bundle artifacts/LATEST [--concurrency 1,2,4,8] \
        [--rounds 5] [--n 2000]

Prints one JSON line per concurrency: the median CPU ms per request of each variant and their
ratio (on / off), and how many ranker calls the batching made per request.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def _pipelines(bundle_dir: Path, candidates: int):
    from services.contract.bundle import Bundle
    from services.feature.config import DurabilitySettings
    from services.gateway.app import build_pipeline
    from services.gateway.config import GatewaySettings
    from services.gateway.stages.inprocess import InProcessRanking, build_in_process

    bundle = Bundle.load(bundle_dir)
    settings = GatewaySettings.from_env({"RECSERVE_MODE": "embedded"})
    settings = replace(settings, limits=replace(settings.limits, candidates=candidates))
    stages = build_in_process(bundle, prefer_gpu=False, durability=DurabilitySettings(log=None))
    alone = replace(stages, ranking=InProcessRanking(stages.ranking.ranker, None, max_batch=1))
    users = [str(u) for u in np.load(bundle.path("user_ids.npy"), allow_pickle=True)]
    batching = stages.ranking.batching
    return (
        build_pipeline(settings, bundle, alone),
        build_pipeline(settings, bundle, stages),
        (
            users,
            batching,
        ),
    )


def main(argv: list[str] | None = None) -> None:
    from services.contract.types import FilterSpec

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", type=Path, required=True, help="bundle dir (or artifacts/LATEST)")
    p.add_argument("--concurrency", default="1,2,4,8")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--n", type=int, default=2000, help="requests per round and variant")
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("-k", type=int, default=20)
    args = p.parse_args(argv)
    off, on, (users, batching) = _pipelines(args.bundle, args.candidates)
    filters = FilterSpec(exclude_seen=True)

    async def run(pipeline, n: int, at_once: int) -> None:
        for start in range(0, n, at_once):
            await asyncio.gather(
                *(
                    pipeline.recommend(users[(start + j) % len(users)], args.k, filters)
                    for j in range(at_once)
                )
            )

    loop = asyncio.new_event_loop()
    try:
        for at_once in (int(c) for c in args.concurrency.split(",")):
            cpu: dict[str, list[float]] = {"off": [], "on": []}
            calls0, requests0 = batching.calls, batching.requests
            for _ in range(args.rounds):
                for name, pipeline in (("off", off), ("on", on)):
                    loop.run_until_complete(run(pipeline, max(args.n // 10, at_once), at_once))
                    start = time.process_time()
                    loop.run_until_complete(run(pipeline, args.n, at_once))
                    cpu[name].append((time.process_time() - start) * 1e3 / args.n)
            med = {name: float(np.median(v)) for name, v in cpu.items()}
            requests = batching.requests - requests0
            print(
                json.dumps(
                    {
                        "concurrency": at_once,
                        "off_cpu_ms": round(med["off"], 4),
                        "on_cpu_ms": round(med["on"], 4),
                        "on_over_off": round(med["on"] / med["off"], 3),
                        "ranker_calls_per_request": round(
                            (batching.calls - calls0) / max(requests, 1), 3
                        ),
                    }
                )
            )
    finally:
        loop.close()


if __name__ == "__main__":
    main()
