"""One embedded gateway in two variants of its serving stack, in interleaved rounds: what each
costs a Recommend, closed loop, at each concurrency.

    python -m bench.event_loop_ab --artifacts DIR [--version V] [--compare loop|grpc-io]
        [--concurrency 1,8] [--rounds 2] [--duration 8] [--warmup 2]

--compare loop (default): the standard asyncio loop vs uvloop (RECSERVE_EVENT_LOOP).
--compare grpc-io: grpc's EventEngine vs its POSIX endpoints (RECSERVE_GRPC_IO,
services/platform/grpc_io.py), in the gateway only: the load harness in this process keeps the
stack this process started with (`posix` unless RECSERVE_GRPC_IO says otherwise).

Each round starts a fresh gateway process per variant (bench.topology.start_embedded, loopback),
drives it closed loop with the load harness in this process (Recommend only, the bundle's
users) and reads the gateway's CPU from /proc. Prints p50 / p99, answered requests per second
and the gateway's CPU ms per request, one line per run, then the medians per variant.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from pathlib import Path

from bench.cpu_share import cpu_seconds
from bench.topology import start_embedded
from loadtest.runner import LoadSpec, TrafficConfig, run_async
from services.contract.bundle import resolve_bundle_dir

LOOPS = ("asyncio", "uvloop")
# --compare -> (the setting, its two values): the variants a run compares
COMPARISONS = {
    "loop": ("RECSERVE_EVENT_LOOP", LOOPS),
    "grpc-io": ("RECSERVE_GRPC_IO", ("event_engine", "posix")),
}


def measure(
    artifacts: Path,
    version: str,
    env: dict[str, str],
    concurrency: int,
    traffic,
    args,
    log_dir: Path,
) -> dict:
    """One gateway process started with `env` over its own, in log_dir."""
    with start_embedded(artifacts, version, log_dir, gateways=1, extra_env=env) as group:
        pids = group.pids()
        spec = LoadSpec(
            target=group.target,
            mode="closed",
            concurrency=concurrency,
            duration_s=args.duration,
            warmup_s=args.warmup,
            processes=1,
            seed=3,
        )
        before = sum(cpu_seconds(pid) for pid in pids.values())
        result = asyncio.run(run_async(spec, traffic))
        after = sum(cpu_seconds(pid) for pid in pids.values())
    summary = result.summary()
    return {
        "p50_ms": summary["latency_ms"]["p50"],
        "p99_ms": summary["latency_ms"]["p99"],
        "answered_per_s": summary["requests"] / args.duration,
        "gateway_cpu_ms": (after - before) / max(result.sent, 1) * 1000,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--artifacts", type=Path, required=True)
    p.add_argument("--version", default="latest")
    p.add_argument("--compare", choices=sorted(COMPARISONS), default="loop")
    p.add_argument("--concurrency", default="1,8", help="comma-separated calls in flight")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/event-loop-ab"))
    args = p.parse_args(argv)
    bundle = resolve_bundle_dir(args.artifacts, args.version)
    traffic = TrafficConfig(bundle_dir=str(bundle), mix="recommend=1").build(3)
    setting, variants = COMPARISONS[args.compare]
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(args.rounds):
            for v in variants:
                r = measure(
                    args.artifacts, bundle.name, {setting: v}, concurrency, traffic, args,
                    args.out / v,
                )  # fmt: skip
                runs[v].append(r)
                print(
                    f"concurrency {concurrency} {v:12s} p50 {r['p50_ms']:.3f} ms, p99 "
                    f"{r['p99_ms']:.3f} ms, {r['answered_per_s']:.0f} req/s, gateway CPU "
                    f"{r['gateway_cpu_ms']:.4f} ms/request",
                    flush=True,
                )
        for v in variants:
            med = {k: statistics.median(r[k] for r in runs[v]) for k in runs[v][0]}
            print(
                f"median, concurrency {concurrency}, {v}: p50 {med['p50_ms']:.3f} ms, "
                f"{med['answered_per_s']:.0f} req/s, gateway CPU {med['gateway_cpu_ms']:.4f} "
                "ms/request"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
