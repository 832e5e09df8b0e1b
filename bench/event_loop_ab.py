"""One embedded gateway on the standard asyncio loop and on uvloop (RECSERVE_EVENT_LOOP), in
interleaved rounds: what the event loop costs a Recommend, closed loop, at each concurrency.

    python -m bench.event_loop_ab --artifacts DIR [--version V] [--concurrency 1,8]
        [--rounds 2] [--duration 8] [--warmup 2]

Each round starts a fresh gateway process per loop (bench.topology.start_embedded, loopback),
drives it closed loop with the load harness in this process (Recommend only, the bundle's
users) and reads the gateway's CPU from /proc. Prints p50 / p99, answered requests per second
and the gateway's CPU ms per request, one line per run, then the medians per loop.
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


def measure(
    artifacts: Path, version: str, loop: str, concurrency: int, traffic, args, log_dir: Path
) -> dict:
    env = {"RECSERVE_EVENT_LOOP": loop}
    with start_embedded(artifacts, version, log_dir / loop, gateways=1, extra_env=env) as group:
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
    p.add_argument("--concurrency", default="1,8", help="comma-separated calls in flight")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--duration", type=float, default=8.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--out", type=Path, default=Path("/tmp/event-loop-ab"))
    args = p.parse_args(argv)
    bundle = resolve_bundle_dir(args.artifacts, args.version)
    traffic = TrafficConfig(bundle_dir=str(bundle), mix="recommend=1").build(3)
    for concurrency in (int(c) for c in args.concurrency.split(",")):
        runs: dict[str, list[dict]] = {loop: [] for loop in LOOPS}
        for _ in range(args.rounds):
            for loop in LOOPS:
                r = measure(args.artifacts, bundle.name, loop, concurrency, traffic, args, args.out)
                runs[loop].append(r)
                print(
                    f"concurrency {concurrency} {loop:8s} p50 {r['p50_ms']:.3f} ms, p99 "
                    f"{r['p99_ms']:.3f} ms, {r['answered_per_s']:.0f} req/s, gateway CPU "
                    f"{r['gateway_cpu_ms']:.4f} ms/request",
                    flush=True,
                )
        for loop in LOOPS:
            med = {k: statistics.median(r[k] for r in runs[loop]) for k in runs[loop][0]}
            print(
                f"median, concurrency {concurrency}, {loop}: p50 {med['p50_ms']:.3f} ms, "
                f"{med['answered_per_s']:.0f} req/s, gateway CPU {med['gateway_cpu_ms']:.4f} "
                "ms/request"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
