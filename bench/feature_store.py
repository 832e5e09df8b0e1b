"""python -m bench.feature_store: one user + N item lookups, in-memory vs Redis feature store.

The lookup is what the gateway's feature stage costs per request: get_user(random user) plus
the item rows of N candidates (item features stay in process memory in both backends). Redis
cases: no live events, LIVE live events per user with a warm replica cache (steady state: one
LRANGE returning one entry), the same with the cache off (every call folds all LIVE entries),
apply_events of one event (fsync'd AOF), and the raw round trip, sync vs redis.asyncio, to
show what a sync call costs the event loop. Without --redis-url a durable redis-server
(appendonly yes, appendfsync always) is started on a free loopback port in a temp dir.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import redis
import redis.asyncio

from bench.stages import time_calls
from services.contract.bundle import Bundle, resolve_bundle_dir
from services.contract.types import Event, EventKind
from services.feature.redis_store import RedisFeatureStore, redis_client
from services.feature.store import InMemoryFeatureStore


@contextmanager
def durable_redis() -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("redis-server not found: install it or pass --redis-url")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly",
             "yes", "--appendfsync", "always", "--dir", tmp, "--logfile", ""],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        try:
            client = redis.Redis(port=port)
            for _ in range(500):
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    time.sleep(0.02)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


def _async_round_trip(url: str, key: str, n: int) -> dict[str, float]:
    async def main() -> dict[str, float]:
        client = redis.asyncio.Redis.from_url(url, decode_responses=True)
        for _ in range(50):
            await client.lrange(key, 0, -1)
        samples = np.empty(n)
        for i in range(n):
            t0 = time.perf_counter()
            await client.lrange(key, 0, -1)
            samples[i] = time.perf_counter() - t0
        await client.aclose()
        ms = samples * 1000
        return {"n": n, "p50_ms": round(float(np.percentile(ms, 50)), 4),
                "p99_ms": round(float(np.percentile(ms, 99)), 4)}  # fmt: skip

    return asyncio.run(main())


def run(bundle: Bundle, url: str, n_items: int, live: int, n: int) -> dict[str, dict]:
    memory = InMemoryFeatureStore.from_bundle(bundle)
    rng = np.random.default_rng(0)
    users = [str(u) for u in memory.users.ids]
    item_ids = memory.catalog.vocab.ids
    cand_ids = [str(i) for i in rng.choice(item_ids, size=min(n_items, item_ids.size), replace=0)]
    pick: Callable[[], str] = lambda: users[rng.integers(len(users))]  # noqa: E731
    run_id = f"bench-{int(time.time())}"

    def store(prefix: str, **kwargs) -> RedisFeatureStore:
        client = redis_client(url)
        return RedisFeatureStore.from_bundle(bundle, client=client, prefix=prefix, **kwargs)

    empty = store(f"{run_id}-empty")
    warm = store(f"{run_id}-live")
    cold = store(f"{run_id}-live", cache_users=0)
    events = [
        Event(u, str(item_ids[rng.integers(item_ids.size)]), EventKind.VIEW, 2_000_000_000 + k)
        for k in range(live)
        for u in users
    ]
    for start in range(0, len(events), 1000):
        warm.apply_events(events[start : start + 1000])
    for u in users:  # fill the warm replica's cache
        warm.get_user(u)

    def lookup(s) -> Callable[[], object]:
        return lambda: (s.get_user(pick()), s.catalog.indices(cand_ids))

    one = Event("bench-writer", cand_ids[0], EventKind.CLICK, 2_000_000_000)
    sync_client = redis_client(url)
    key = empty.user_key("nobody")
    k = len(cand_ids)
    out = {
        f"memory_user_plus_{k}_items": time_calls(lookup(memory), n),
        f"redis_user_plus_{k}_items_no_live_events": time_calls(lookup(empty), n),
        f"redis_user_plus_{k}_items_{live}_live_warm_cache": time_calls(lookup(warm), n),
        f"redis_user_plus_{k}_items_{live}_live_no_cache": time_calls(lookup(cold), n),
        "redis_apply_events_1_fsync_always": time_calls(lambda: empty.apply_events([one]), n),
        "redis_round_trip_sync_lrange": time_calls(lambda: sync_client.lrange(key, 0, -1), n),
        "redis_round_trip_asyncio_lrange": _async_round_trip(url, key, n),
    }
    with redis_client(url) as client:  # leave nothing behind on a shared Redis
        for pattern in (f"{run_id}-*",):
            for name in client.scan_iter(match=pattern, count=1000):
                client.delete(name)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifacts", type=Path, default=Path("artifacts"))
    parser.add_argument("--version", default="latest")
    parser.add_argument("--redis-url", help="an existing Redis (default: start a temporary one)")
    parser.add_argument("--items", type=int, default=200)
    parser.add_argument("--live", type=int, default=20, help="live events per user")
    parser.add_argument("-n", type=int, default=2000, help="timed calls per case")
    args = parser.parse_args()
    bundle = Bundle.load(resolve_bundle_dir(args.artifacts, args.version))
    if args.redis_url:
        result = run(bundle, args.redis_url, args.items, args.live, args.n)
    else:
        with durable_redis() as url:
            result = run(bundle, url, args.items, args.live, args.n)
    print(json.dumps({"bundle": bundle.version, "cases": result}, indent=2))


if __name__ == "__main__":
    main()
