"""python -m bench.feedback_log: append throughput and latency of the feedback event log.

Closed loop: C threads each append one-event batches back to back (the next after the previous
is durable) for a few seconds, per fsync mode (always = fsync per record, group = one fsync per
group commit, off = no fsync) and group delay. Reports records/s, p50/p99 append latency and
records per fsync, then how fast the log reads back (start-up replay decode rate). Writes into
a fresh directory under --dir (use a real disk: fsync on tmpfs costs nothing).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from services.contract.types import Event, EventKind
from services.feature.eventlog import EventLog, LogSettings, encode_events, read_events

CONFIGS = [
    ("always", 0.0, 1), ("always", 0.0, 16),
    ("group", 0.0, 1), ("group", 0.0, 16), ("group", 0.002, 16),
    ("off", 0.0, 1), ("off", 0.0, 16),
]  # fmt: skip


def run_one(directory: Path, fsync: str, delay_s: float, threads: int, seconds: float) -> dict:
    log = EventLog(LogSettings(directory, fsync=fsync, group_delay_s=delay_s))
    payloads = [
        encode_events([Event(f"user-{t}", f"item-{t}", EventKind.CLICK, 1_700_000_000)])
        for t in range(threads)
    ]
    latencies: list[list[float]] = [[] for _ in range(threads)]
    stop_at = time.perf_counter() + seconds
    barrier = threading.Barrier(threads)

    def worker(t: int) -> None:
        barrier.wait()
        out, payload = latencies[t], payloads[t]
        while time.perf_counter() < stop_at:
            start = time.perf_counter()
            log.append(payload).result()
            out.append(time.perf_counter() - start)

    workers = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    begin = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    elapsed = time.perf_counter() - begin
    log.close()
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1000.0
    return {
        "fsync": fsync,
        "group_delay_ms": delay_s * 1000.0,
        "threads": threads,
        "records": int(lat.size),
        "records_per_s": round(lat.size / elapsed),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
        "fsyncs": log.fsyncs,
        "records_per_fsync": round(lat.size / log.fsyncs, 1) if log.fsyncs else None,
    }


def replay_rate(directory: Path) -> dict:
    start = time.perf_counter()
    events = sum(len(batch) for _, batch in read_events(directory))
    seconds = time.perf_counter() - start
    return {"events": events, "seconds": round(seconds, 3), "events_per_s": round(events / seconds)}


def recovery(bundle_dir: Path, directory: Path, n_events: int) -> dict:
    """Store level: feed n_events (batches of 10, all in flight), then time a restart from the
    log alone (as after SIGKILL), the snapshot at graceful close, and a restart from it."""
    from services.contract.bundle import Bundle
    from services.feature.config import DurabilitySettings
    from services.feature.snapshot import open_durable_store

    bundle = Bundle.load(bundle_dir)
    settings = DurabilitySettings(LogSettings(directory), snapshot_every=0)
    store, durable = open_durable_store(bundle, settings)
    users = store.users.ids[1:].tolist()
    items = store.catalog.vocab.ids[1:].tolist()
    rng = np.random.default_rng(0)
    pairs = zip(
        rng.integers(len(users), size=n_events).tolist(),
        rng.integers(len(items), size=n_events).tolist(),
        strict=True,
    )
    events = [
        Event(users[u], items[i], EventKind.CLICK, 1_700_000_000 + k)
        for k, (u, i) in enumerate(pairs)
    ]
    start = time.perf_counter()
    futures = [store.submit_events(events[k : k + 10]) for k in range(0, n_events, 10)]
    for f in futures:
        f.result()
    apply_s = time.perf_counter() - start
    durable.log.close()  # no snapshot: the restart replays the whole log
    timings = {"events": n_events, "apply_events_per_s": round(n_events / apply_s)}
    start = time.perf_counter()
    _store, durable = open_durable_store(bundle, settings)
    timings["restart_from_log_s"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    durable.close()
    timings["snapshot_at_close_s"] = round(time.perf_counter() - start, 3)
    start = time.perf_counter()
    _store, durable = open_durable_store(bundle, settings)
    timings["restart_from_snapshot_s"] = round(time.perf_counter() - start, 3)
    durable.close()
    start = time.perf_counter()
    Bundle.load(bundle_dir)  # the part of a restart that is not about feedback
    from services.feature.store import InMemoryFeatureStore

    InMemoryFeatureStore.from_bundle(bundle)
    timings["bundle_only_s"] = round(time.perf_counter() - start, 3)
    return timings


def service(artifacts: Path, directory: Path, fsync: str, threads: int, seconds: float) -> dict:
    """End to end: `python -m services.feature` on `artifacts` with this fsync mode; `threads`
    clients send one-event ApplyEvents back to back; -> acknowledged/s, p50/p99 ms."""
    import grpc

    from recserve.v1 import common_pb2, feature_pb2, feature_pb2_grpc
    from services.launcher import free_port

    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSERVE_")}
    env.update(
        RECSERVE_ARTIFACTS=str(artifacts), RECSERVE_FEATURE_PORT=str(port),
        RECSERVE_FEATURE_LOG_DIR=str(directory), RECSERVE_FEATURE_FSYNC=fsync,
        RECSERVE_LOG_LEVEL="warning",
    )  # fmt: skip
    proc = subprocess.Popen([sys.executable, "-m", "services.feature"], env=env)
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=120)
        stub = feature_pb2_grpc.FeatureServiceStub(channel)
        requests = [
            feature_pb2.ApplyEventsRequest(
                events=[
                    common_pb2.Event(
                        user_id=f"bench-{t}", item_id="1", type=common_pb2.EVENT_TYPE_CLICK
                    )
                ]
            )
            for t in range(threads)
        ]
        for request in requests:  # warm-up (channel, first fsync)
            stub.ApplyEvents(request, timeout=30)
        latencies: list[list[float]] = [[] for _ in range(threads)]
        stop_at = time.perf_counter() + seconds

        def client(t: int) -> None:
            while time.perf_counter() < stop_at:
                start = time.perf_counter()
                stub.ApplyEvents(requests[t], timeout=30)
                latencies[t].append(time.perf_counter() - start)

        workers = [threading.Thread(target=client, args=(t,)) for t in range(threads)]
        begin = time.perf_counter()
        for w in workers:
            w.start()
        for w in workers:
            w.join()
        elapsed = time.perf_counter() - begin
        channel.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    lat = np.concatenate([np.asarray(x) for x in latencies]) * 1000.0
    return {
        "fsync": fsync,
        "threads": threads,
        "acks_per_s": round(lat.size / elapsed),
        "p50_ms": round(float(np.percentile(lat, 50)), 3),
        "p99_ms": round(float(np.percentile(lat, 99)), 3),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.feedback_log")
    parser.add_argument("--dir", type=Path, default=Path("state"), help="parent of the scratch log")
    parser.add_argument("--seconds", type=float, default=3.0, help="per configuration")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    parser.add_argument("--bundle", type=Path, default=None, help="also time store recovery")
    parser.add_argument("--events", type=int, default=50_000, help="events for --bundle")
    parser.add_argument(
        "--service", type=Path, default=None, help="artifacts dir: also time ApplyEvents end to end"
    )
    args = parser.parse_args(argv)
    args.dir.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="bench-feedback-log-", dir=args.dir))
    rows, rec = [], None
    try:
        print("| fsync | delay ms | threads | records/s | p50 ms | p99 ms | records/fsync |")
        print("|---|---|---|---|---|---|---|")
        for i, (fsync, delay, threads) in enumerate(CONFIGS):
            row = run_one(scratch / f"run{i}", fsync, delay, threads, args.seconds)
            rows.append(row)
            print(
                f"| {fsync} | {row['group_delay_ms']:g} | {threads} | {row['records_per_s']} "
                f"| {row['p50_ms']} | {row['p99_ms']} | {row['records_per_fsync']} |",
                flush=True,
            )
        biggest = max(range(len(rows)), key=lambda i: rows[i]["records"])
        replay = replay_rate(scratch / f"run{biggest}")
        print(f"replay (read + decode): {replay}")
        if args.bundle is not None:
            rec = recovery(args.bundle, scratch / "recovery", args.events)
            print(f"store recovery: {rec}")
        if args.service is not None:
            for i, (fsync, threads) in enumerate([("always", 16), ("group", 16), ("group", 1)]):
                row = service(args.service, scratch / f"svc{i}", fsync, threads, args.seconds)
                rows.append({"service": True, **row})
                print(f"feature service ApplyEvents: {row}", flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if args.json is not None:
        args.json.write_text(json.dumps({"rows": rows, "replay": replay}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
