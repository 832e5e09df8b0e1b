"""python -m bench.ort_warmth: what serving does to ONNX Runtime's per-call cost between calls.

bench.stages times each model back to back, so the caches, TLB and branch predictors stay warm
from one call to the next. A serving gateway runs gRPC and Python work between two requests'
model calls, and sometimes idles. This tool times the bundle's user tower and ranker on the
same sessions and the same inputs (varied users, N candidates each), call by call
(perf_counter), in three settings, interleaved rounds:

    hot           one call after another, as bench.stages times them
    after_grpc    each pair of calls after one gRPC round trip (a health check) to a grpc.aio
                  server in this process, on the same event loop, as inside a serving gateway
    after_idle    the same, then an idle gap of --gap-ms before the calls

    python -m bench.ort_warmth BUNDLE_DIR [--rounds 3] [--calls 1000] [--gap-ms 1]

Prints JSON: per setting and model the p50/p99 ms over all rounds and the p50 over hot's.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SETTINGS = ("hot", "after_grpc", "after_idle")


def _inputs(bundle_dir: Path, n_users: int, n_candidates: int):
    """-> (tower session, its feeds per user, ranker session, its output names, its feeds per
    user): what the pipeline feeds each model for varied users."""
    from services.contract.bundle import Bundle
    from services.feature.store import InMemoryFeatureStore
    from services.ranking.ranker import OnnxRanker
    from services.retrieval.retriever import Retriever

    bundle = Bundle.load(bundle_dir, verify=False)
    store = InMemoryFeatureStore.from_bundle(bundle)
    retriever = Retriever.from_bundle(bundle)
    ranker = OnnxRanker.from_bundle(bundle, prefer_gpu=False)
    rng = np.random.default_rng(0)
    ids, n_items = store.users.ids, ranker.n_item_rows - 1
    tower_feeds, ranker_feeds = [], []
    for _ in range(n_users):
        user = store.get_user(str(ids[rng.integers(len(ids))]))
        query = retriever.user_embedding(user)
        candidates = rng.choice(np.arange(1, n_items + 1), min(n_candidates, n_items), False)
        feeds, items = ranker.prepare(user, candidates, query)
        full = ranker.batch_feeds([(feeds, items)])
        ranker_feeds.append({i.name: full[i.name] for i in ranker._session.get_inputs()})
        tower_feeds.append(retriever.tower_feeds(user))
    outputs = [o.name for o in ranker._session.get_outputs()]
    # the services' own sessions: same options, same provider (as bench.gpu)
    return retriever._session, tower_feeds, ranker._session, outputs, ranker_feeds


async def _measure(args) -> dict:
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from services.platform.server import create_server

    tower, tower_feeds, ranker, outputs, ranker_feeds = _inputs(
        args.bundle, args.users, args.candidates
    )
    tower_out = [o.name for o in tower.get_outputs()]
    server, port = await create_server(lambda _server: None, port=0, service_names=[])
    samples = {s: {"user_tower": [], "ranker": []} for s in SETTINGS}
    request = health_pb2.HealthCheckRequest()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            await stub.Check(request)
            for i in range(args.warmup):
                tower.run(tower_out, tower_feeds[i % args.users])
                ranker.run(outputs, ranker_feeds[i % args.users])
            for _ in range(args.rounds):
                for setting in SETTINGS:
                    out = samples[setting]
                    for i in range(args.calls):
                        if setting != "hot":
                            await stub.Check(request)
                        if setting == "after_idle":
                            time.sleep(args.gap_ms / 1000)
                        user = i % args.users
                        t0 = time.perf_counter()
                        tower.run(tower_out, tower_feeds[user])
                        t1 = time.perf_counter()
                        ranker.run(outputs, ranker_feeds[user])
                        t2 = time.perf_counter()
                        out["user_tower"].append(t1 - t0)
                        out["ranker"].append(t2 - t1)
    finally:
        await server.stop(0)
    result: dict = {
        "setup": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    }
    hot = {model: np.percentile(values, 50) * 1000 for model, values in samples["hot"].items()}
    for setting in SETTINGS:
        result[setting] = {}
        for model, values in samples[setting].items():
            ms = np.asarray(values) * 1000
            p50 = float(np.percentile(ms, 50))
            result[setting][model] = {
                "p50_ms": round(p50, 4),
                "p99_ms": round(float(np.percentile(ms, 99)), 4),
                "over_hot_p50": round(p50 / hot[model], 3),
            }
    return result


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value}: must be at least 1")
    return value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bundle", type=Path, help="a bundle directory")
    parser.add_argument("--rounds", type=_positive, default=3)
    parser.add_argument(
        "--calls", type=_positive, default=1000, help="timed calls per setting per round"
    )
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--users", type=_positive, default=300, help="distinct users cycled")
    parser.add_argument("--candidates", type=_positive, default=200)
    parser.add_argument("--gap-ms", type=float, default=1.0, help="after_idle's gap")
    args = parser.parse_args(argv)
    if not (args.bundle / "manifest.json").is_file():
        parser.error(f"{args.bundle} is not a bundle directory (no manifest.json)")
    from services.platform.server import run_loop

    print(json.dumps(run_loop(_measure(args)), indent=2))


if __name__ == "__main__":
    main()
