"""CPU per Recommend of the whole embedded pipeline (features -> retrieval -> user value ->
ranking -> top 20, in process, no gRPC) for two or more bundles, in interleaved rounds: what a
model choice (e.g. the transformer user tower) costs the serving path as a whole, not one graph.

    python -m bench.pipeline_ab BUNDLE_DIR [BUNDLE_DIR ...] [--rounds 7] [--calls 1000]

Each round runs `--calls` Recommend calls (k = 20, 200 candidates, exclude seen) per bundle,
users drawn in a fixed stride over the bundle's users; prints the median over rounds of the
CPU ms per call (this thread's time) and each bundle's difference to the first.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from dataclasses import replace
from pathlib import Path

import numpy as np


def _pipeline(bundle_dir: Path):
    from services.contract.bundle import Bundle
    from services.feature.config import DurabilitySettings
    from services.gateway.app import build_pipeline
    from services.gateway.config import GatewaySettings
    from services.gateway.stages.inprocess import build_in_process

    bundle = Bundle.load(bundle_dir, verify=False)
    settings = GatewaySettings.from_env({"RECSERVE_MODE": "embedded"})
    settings = replace(settings, limits=replace(settings.limits, candidates=200))
    stages = build_in_process(bundle, prefer_gpu=False, durability=DurabilitySettings(log=None))
    users = [str(u) for u in np.load(bundle.path("user_ids.npy"), allow_pickle=False)[1:]]
    return build_pipeline(settings, bundle, stages), users


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundles", nargs="+", type=Path, help="bundle directories")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--calls", type=int, default=1000)
    args = p.parse_args(argv)
    from services.contract.types import FilterSpec

    loop = asyncio.new_event_loop()
    unseen = FilterSpec(exclude_seen=True)
    setups = [_pipeline(path) for path in args.bundles]

    async def serve(pipeline, users: list[str], n: int, offset: int) -> None:
        for i in range(n):
            await pipeline.recommend(users[(offset + 7 * i) % len(users)], 20, unseen)

    for pipeline, users in setups:  # warm-up
        loop.run_until_complete(serve(pipeline, users, 300, 0))
    cpu: list[list[float]] = [[] for _ in setups]
    for r in range(args.rounds):
        for i, (pipeline, users) in enumerate(setups):
            start = time.thread_time()
            loop.run_until_complete(serve(pipeline, users, args.calls, r * args.calls))
            cpu[i].append((time.thread_time() - start) * 1000 / args.calls)
    first = float(np.median(cpu[0]))
    print(f"CPU ms per Recommend, median of {args.rounds} rounds x {args.calls} calls:")
    for path, times in zip(args.bundles, cpu, strict=True):
        median = float(np.median(times))
        print(f"  {median:.4f}  ({median - first:+.4f} vs the first)  {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
