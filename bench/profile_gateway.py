"""Where the no-op gateway's Recommend time goes, in process: the real GatewayServicer.Recommend
called directly (no gRPC server, no interceptors) over bench.canned_stages' canned pipeline.

    python -m bench.profile_gateway --bundle /tmp/art_new/LATEST [--n 5000] [--k 20] [--top 25]

Prints the mean wall time per call (timed run, no profiler), then a cProfile of the same loop
sorted by own time (tottime) and by cumulative time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import pstats
import time
from pathlib import Path


class _Context:
    """The little of grpc.aio.ServicerContext a servicer method may touch."""

    def invocation_metadata(self):
        return ()

    def peer(self) -> str:
        return "profile"


def _servicer(bundle_dir: Path, candidates: int):
    from bench.canned_stages import canned_pipeline
    from services.contract.bundle import Bundle
    from services.gateway.servicer import GatewayServicer

    bundle = Bundle.load(bundle_dir, verify=False)
    return GatewayServicer(canned_pipeline(bundle, candidates))


def _request(k: int):
    from recserve.v1 import gateway_pb2

    return gateway_pb2.RecommendRequest(user_id="canned", k=k)


async def _loop(servicer, request, n: int) -> None:
    context = _Context()
    for _ in range(n):
        await servicer.Recommend(request, context)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--bundle", required=True, type=Path, help="bundle dir (or artifacts/LATEST)")
    p.add_argument("--n", type=int, default=5000, help="calls per run")
    p.add_argument("--k", type=int, default=20)
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("--top", type=int, default=25)
    args = p.parse_args(argv)
    bundle = args.bundle
    if bundle.name == "LATEST" and bundle.is_file():
        bundle = bundle.parent / bundle.read_text().strip()
    servicer, request = _servicer(bundle, args.candidates), _request(args.k)
    asyncio.run(_loop(servicer, request, 500))  # warm-up
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        asyncio.run(_loop(servicer, request, args.n))
        best = min(best, (time.process_time() - start) / args.n * 1000)
    print(
        f"Recommend in process (servicer + pipeline, canned stages, k={args.k}, "
        f"{args.candidates} candidates): {best:.4f} ms CPU per call (best of 3 x {args.n})"
    )
    prof = cProfile.Profile()
    prof.enable()
    asyncio.run(_loop(servicer, request, args.n))
    prof.disable()
    for key in ("tottime", "cumulative"):
        out = io.StringIO()
        pstats.Stats(prof, stream=out).strip_dirs().sort_stats(key).print_stats(args.top)
        print(f"--- by {key} ---")
        print(out.getvalue().strip("\n"))


if __name__ == "__main__":
    main()
