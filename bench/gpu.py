"""Ranking throughput: raw in-process ONNX Runtime vs the ranking service over gRPC, CPU vs CUDA.

    python -m bench.gpu --artifacts artifacts --batch 256 --candidates 200 --seconds 10

For each device (CPU always; CUDA when onnxruntime can use it):
1. raw: B prepared requests of N candidates scored in one call, back to back, three ways:
   `run` (OnnxRanker.rank_prepared, what the service's micro-batcher calls), `iobinding`
   (inputs bound from host memory, outputs bound on the device and copied back once) and, on
   CUDA, `cuda_graph` (fixed-shape device buffers, the graph captured on the first run and
   replayed: no per-kernel launch cost);
2. grpc: the real ranking service (`python -m services.ranking`, RECSERVE_RANKING_MAX_BATCH=B,
   batches on a thread) driven closed-loop by `--clients` processes with `--in-flight` calls
   each, every call one user with N candidates.
Reported: candidates/s, per-call p50/p99, the grpc/raw ratio at the same batch size and the
CUDA/CPU ratio of the service. Loopback only. Results: JSON + Markdown under --out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort

from services.contract.bundle import Bundle, resolve_bundle_dir
from services.contract.onnx import CPU, CUDA, cuda_driver_present
from services.contract.types import UserState
from services.launcher import free_port
from services.platform.healthcheck import check
from services.ranking.ranker import QUERY_INPUT, OnnxRanker


def cuda_usable() -> bool:
    return CUDA in ort.get_available_providers() and cuda_driver_present()


def _requests(ranker: OnnxRanker, batch: int, n_candidates: int, seed: int = 0) -> list:
    """B prepared (feeds, items) requests: random known users, N distinct candidates each."""
    rng = np.random.default_rng(seed)
    n_items = ranker.inputs.n_item_rows - 1
    n = min(n_candidates, n_items)
    out = []
    for _ in range(batch):
        user = UserState(
            "bench",
            True,
            int(rng.integers(1, ranker.inputs.n_user_rows)),
            np.zeros(0, np.int64),
            rng.integers(1, n_items + 1, size=ranker.inputs.history_len).astype(np.int64),
        )
        out.append(ranker.prepare(user, rng.choice(np.arange(1, n_items + 1), n, replace=False)))
    return out


def _timed(fn, seconds: float, per_call: int) -> dict[str, float]:
    for _ in range(3):
        fn()  # warm-up (and CUDA graph capture)
    samples = []
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    ms = np.asarray(samples) * 1000
    return {
        "calls": len(samples),
        "candidates_per_s": round(per_call * len(samples) / (time.perf_counter() - start), 1),
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def raw_throughput(
    bundle: Bundle, device: str, batch: int, n_candidates: int, seconds: float
) -> dict[str, dict]:
    ranker = OnnxRanker.from_bundle(bundle, prefer_gpu=device == "cuda")
    if device == "cuda" and ranker.provider != CUDA:
        raise RuntimeError(f"asked for CUDA, onnxruntime gave {ranker.provider}")
    prepared = _requests(ranker, batch, n_candidates)
    per_call = sum(items.size for _, items in prepared)
    feeds = ranker.batch_feeds(prepared)
    out = {"run": _timed(lambda: ranker.rank_prepared(prepared), seconds, per_call)}

    session = ranker._session  # the service's own session: same options, same provider
    where = "cuda" if device == "cuda" else "cpu"
    outputs = [o.name for o in session.get_outputs()]
    # ranker.onnx's own inputs (a bundle with rater.onnx: the feeds of both graphs)
    feeds = {i.name: feeds[i.name] for i in session.get_inputs()}

    def with_binding() -> None:
        binding = session.io_binding()
        for name, value in feeds.items():
            binding.bind_cpu_input(name, value)
        for name in outputs:
            binding.bind_output(name, where)
        session.run_with_iobinding(binding)
        binding.copy_outputs_to_cpu()

    out["iobinding"] = _timed(with_binding, seconds, per_call)
    if device == "cuda":
        out["cuda_graph"] = _cuda_graph(bundle, feeds, outputs, seconds, per_call)
    return out


def _cuda_graph(bundle: Bundle, feeds, outputs, seconds: float, per_call: int) -> dict:
    """Fixed device buffers, graph captured once, replayed; inputs refreshed in place."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(bundle.path("ranker.onnx")),
        options,
        providers=[(CUDA, {"enable_cuda_graph": "1"}), CPU],
    )
    inputs = {k: ort.OrtValue.ortvalue_from_numpy(v, "cuda", 0) for k, v in feeds.items()}
    probe = session.run(outputs, feeds)
    results = {
        name: ort.OrtValue.ortvalue_from_shape_and_type(p.shape, p.dtype, "cuda", 0)
        for name, p in zip(outputs, probe, strict=True)
    }
    binding = session.io_binding()
    for name, value in inputs.items():
        binding.bind_ortvalue_input(name, value)
    for name, value in results.items():
        binding.bind_ortvalue_output(name, value)

    def replay() -> None:
        for name, value in feeds.items():
            inputs[name].update_inplace(value)  # a new batch's values, same buffers
        session.run_with_iobinding(binding)
        for value in results.values():
            value.numpy()

    return _timed(replay, seconds, per_call)


# --- through gRPC ------------------------------------------------------------------------------


def _client(
    target: str, users: list, items: list, queries: list, in_flight: int, seconds: float, queue
) -> None:
    """One load process: `in_flight` closed-loop callers; puts (latencies_s, candidates).
    queries: each request's user embedding (what the gateway passes on from retrieval; [] for a
    ranker.onnx without that input)."""
    import grpc

    from recserve.v1 import ranking_pb2, ranking_pb2_grpc

    requests = [
        ranking_pb2.RankRequest(user=u, item_indices=i, user_embedding=q)
        for u, i, q in zip(users, items, queries, strict=True)
    ]

    async def main() -> tuple[list[float], int]:
        latencies: list[float] = []
        scored = 0
        async with grpc.aio.insecure_channel(target) as channel:
            stub = ranking_pb2_grpc.RankingServiceStub(channel)
            stop = time.perf_counter() + seconds

            async def caller(k: int) -> None:
                nonlocal scored
                while time.perf_counter() < stop:
                    request = requests[k % len(requests)]
                    t0 = time.perf_counter()
                    reply = await stub.Rank(request, timeout=30)
                    latencies.append(time.perf_counter() - t0)
                    scored += len(reply.p_interact)
                    k += in_flight

            await asyncio.gather(*(caller(k) for k in range(in_flight)))
        return latencies, scored

    queue.put(asyncio.run(main()))


def grpc_throughput(
    artifacts: Path, version: str, device: str, batch: int, n_candidates: int, seconds: float,
    clients: int, in_flight: int, log_dir: Path,
) -> dict:  # fmt: skip
    from services.platform import convert

    bundle = Bundle.load(resolve_bundle_dir(artifacts, version))
    ranker = OnnxRanker.from_bundle(bundle, prefer_gpu=False)
    prepared = _requests(ranker, max(batch, 64), n_candidates, seed=1)
    users = [
        convert.user_state_to_proto(
            UserState("bench", True, int(f["user_index"][0]), f["profile"][0], f["history"][0])
        )
        for f, _ in prepared
    ]
    items = [i.tolist() for _, i in prepared]
    # the ranker's query as the gateway sends it (retrieval's embedding), so the service does
    # the work the raw calls above do (no user tower)
    queries = [f[QUERY_INPUT][0].tolist() if QUERY_INPUT in f else [] for f, _ in prepared]
    port = free_port()
    env = {
        **os.environ,
        "RECSERVE_ARTIFACTS": str(artifacts),
        "RECSERVE_BUNDLE_VERSION": version,
        "RECSERVE_RANKING_PORT": str(port),
        "RECSERVE_RANKING_DEVICE": device,
        "RECSERVE_RANKING_MAX_BATCH": str(batch),
        "RECSERVE_RANKING_EXECUTOR": "thread",
        "RECSERVE_RANKING_MAX_CANDIDATES": str(max(n_candidates, 1000)),
    }
    log_dir.mkdir(parents=True, exist_ok=True)
    with open(log_dir / f"ranking-{device}.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.ranking"], env=env, stdout=log, stderr=log
        )
    target = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while not check(target, timeout=1.0):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ranking service ({device}) did not start; see {log_dir}")
            time.sleep(0.3)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        args = (target, users, items, queries, in_flight, seconds, queue)
        procs = [ctx.Process(target=_client, args=args) for _ in range(clients)]
        for p in procs:
            p.start()
        parts = [queue.get(timeout=seconds + 120) for _ in procs]
        for p in procs:
            p.join(30)
    finally:
        proc.terminate()
        proc.wait(30)
    latencies = np.concatenate([np.asarray(lat) for lat, _ in parts]) * 1000
    scored = sum(n for _, n in parts)
    return {
        "calls": int(latencies.size),
        "candidates_per_s": round(scored / seconds, 1),
        "p50_ms": round(float(np.percentile(latencies, 50)), 3),
        "p99_ms": round(float(np.percentile(latencies, 99)), 3),
        "clients": clients,
        "in_flight_per_client": in_flight,
    }


def run(args: argparse.Namespace) -> dict:
    artifacts = Path(args.artifacts)
    bundle = Bundle.load(resolve_bundle_dir(artifacts, args.version))
    devices = ["cpu"] + (["cuda"] if cuda_usable() else [])
    result: dict = {
        "command": "python -m bench.gpu " + " ".join(sys.argv[1:]),
        "bundle": bundle.version,
        "batch": args.batch,
        "candidates": args.candidates,
        "cuda_available": "cuda" in devices,
        "devices": {},
    }
    for device in devices:
        raw = raw_throughput(bundle, device, args.batch, args.candidates, args.seconds)
        served = grpc_throughput(
            artifacts, args.version, device, args.batch, args.candidates, args.seconds,
            args.clients, args.in_flight, Path(args.out) / "logs",
        )  # fmt: skip
        best_raw = max(v["candidates_per_s"] for v in raw.values())
        result["devices"][device] = {
            "raw": raw,
            "grpc": served,
            "grpc_over_raw": round(served["candidates_per_s"] / raw["run"]["candidates_per_s"], 3),
            "grpc_over_best_raw": round(served["candidates_per_s"] / best_raw, 3),
        }
    if "cuda" in result["devices"]:
        cpu = result["devices"]["cpu"]["grpc"]["candidates_per_s"]
        cuda = result["devices"]["cuda"]["grpc"]["candidates_per_s"]
        result["cuda_over_cpu_service"] = round(cuda / cpu, 2) if cpu else None
    return result


def markdown(result: dict) -> str:
    lines = [
        "# Ranking throughput: raw ONNX Runtime vs the ranking service",
        "",
        f"Command: `{result['command']}`  ",
        f"Bundle `{result['bundle']}`, batch {result['batch']}, {result['candidates']} candidates"
        f" per request; CUDA available: {result['cuda_available']}.",
        "",
        "| device | path | candidates/s | p50 ms | p99 ms |",
        "|---|---|---|---|---|",
    ]
    for device, d in result["devices"].items():
        for variant, r in d["raw"].items():
            lines.append(
                f"| {device} | raw {variant} (batch {result['batch']}) | "
                f"{r['candidates_per_s']:,.0f} | {r['p50_ms']} | {r['p99_ms']} |"
            )
        g = d["grpc"]
        lines.append(
            f"| {device} | gRPC service ({g['clients']} x {g['in_flight_per_client']} in flight)"
            f" | {g['candidates_per_s']:,.0f} | {g['p50_ms']} | {g['p99_ms']} |"
        )
    lines.append("")
    for device, d in result["devices"].items():
        lines.append(
            f"- {device}: service / raw `run` = **{d['grpc_over_raw']}**, service / best raw "
            f"= {d['grpc_over_best_raw']} (target on CUDA >= 0.5)"
        )
    if result.get("cuda_over_cpu_service") is not None:
        lines.append(f"- CUDA service / CPU service = **{result['cuda_over_cpu_service']}** (>= 5)")
    if not result["cuda_available"]:
        lines.append("- No usable CUDA provider on this machine: CPU figures only.")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.gpu", description=__doc__.split("\n")[0])
    p.add_argument("--artifacts", default="artifacts")
    p.add_argument("--version", default="latest")
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--candidates", type=int, default=200)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--clients", type=int, default=4, help="load processes")
    p.add_argument("--in-flight", type=int, default=64, help="concurrent calls per process")
    p.add_argument("--out", default="bench-results-gpu")
    args = p.parse_args(argv)
    if args.batch < 1 or args.candidates < 1 or args.seconds <= 0:
        p.error("--batch, --candidates and --seconds must be positive")
    result = run(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(result, indent=2) + "\n")
    (out / "gpu.md").write_text(markdown(result))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
