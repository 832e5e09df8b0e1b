"""Acknowledged feedback is never lost: SIGKILL the feature service mid-stream, restart it, and
every acknowledged event is back (history, seen items, event count); the embedded gateway's
store is durable the same way, and feedback changes the next Recommend (exclude_seen)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from recserve.client import FeedbackEvent, RecserveClient
from recserve.v1 import common_pb2, feature_pb2, feature_pb2_grpc
from services.contract.bundle import Bundle
from services.contract.types import Event, EventKind, FilterSpec
from services.contract.vocab import Vocabulary
from services.feature.config import DurabilitySettings
from services.feature.eventlog import (
    EventLog,
    LogSettings,
    encode_events,
    read_events,
    segment_path,
)
from services.feature.snapshot import SNAPSHOT_NAME, open_durable_store
from services.gateway.app import build_pipeline, start_gateway
from services.gateway.config import GatewaySettings
from services.gateway.stages.inprocess import build_in_process

REPO = Path(__file__).resolve().parents[2]
THREADS, BATCHES, PER_BATCH = 4, 400, 2
KILL_AFTER_ACKS = 120  # acknowledged batches (of THREADS * BATCHES) before SIGKILL


def _start(env: dict[str, str], log_path: Path) -> tuple[subprocess.Popen, int]:
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.feature"], cwd=REPO, env=env, stderr=out
        )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for line in log_path.read_text().splitlines():
            if line.startswith("{") and json.loads(line)["msg"].startswith("listening on"):
                port = int(json.loads(line)["msg"].split()[2].rsplit(":", 1)[1])
                log_path.write_text("")  # the next start finds its own line
                return proc, port
        if proc.poll() is not None:
            break
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"feature service did not start: {log_path.read_text()[-2000:]}")


def _batch(items: list[str], t: int, b: int) -> list[common_pb2.Event]:
    return [
        common_pb2.Event(
            user_id=f"kill-user-{t}",
            item_id=items[(t * BATCHES * PER_BATCH + b * PER_BATCH + j) % len(items)],
            type=common_pb2.EVENT_TYPE_CLICK,
            timestamp=1_000_000_000 + b,
        )
        for j in range(PER_BATCH)
    ]


@pytest.fixture()
def artifacts(tiny_bundle: Path, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    shutil.copytree(tiny_bundle, root / tiny_bundle.name)
    (root / "LATEST").write_text(tiny_bundle.name)
    return root


@pytest.mark.timeout(400)
def test_sigkill_mid_stream_loses_no_acknowledged_event(artifacts, tmp_path):
    bundle = Bundle.load(artifacts / (artifacts / "LATEST").read_text())
    vocab = Vocabulary.load(bundle.path("item_ids.npy"))
    items = vocab.ids[1:].tolist()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSERVE_")}
    env.update(
        RECSERVE_ARTIFACTS=str(artifacts),
        RECSERVE_FEATURE_PORT="0",
        RECSERVE_FEATURE_LOG_DIR=str(tmp_path / "log"),
        RECSERVE_FEATURE_SNAPSHOT_EVERY="100",  # a snapshot mid-stream, then log after it
        RECSERVE_LOG_FORMAT="json",
        RECSERVE_GRACE_SECONDS="2",
    )
    log_path = tmp_path / "feature.log"
    proc, port = _start(env, log_path)
    counts: list[int] = []  # event_count per user after the restart
    acked = [0] * THREADS  # batches acknowledged per thread (each thread sends in order)
    total = threading.Semaphore(0)

    def stream(t: int) -> None:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            for b in range(BATCHES):
                request = feature_pb2.ApplyEventsRequest(events=_batch(items, t, b))
                try:
                    reply = stub.ApplyEvents(request, timeout=30)
                except grpc.RpcError:
                    return  # the server died under us: this batch was not acknowledged
                assert reply.accepted == PER_BATCH
                acked[t] = b + 1
                total.release()

    threads = [threading.Thread(target=stream, args=(t,)) for t in range(THREADS)]
    try:
        for thread in threads:
            thread.start()
        for _ in range(KILL_AFTER_ACKS):
            assert total.acquire(timeout=120), "feedback stream stalled"
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(30) == -signal.SIGKILL
        for thread in threads:
            thread.join(60)
        assert sum(acked) >= KILL_AFTER_ACKS and sum(acked) < THREADS * BATCHES, acked

        proc, port = _start(env, log_path)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = feature_pb2_grpc.FeatureServiceStub(channel)
            for t in range(THREADS):
                user = stub.GetUser(feature_pb2.GetUserRequest(user_id=f"kill-user-{t}"))
                counts.append(user.event_count)
                # Durable = a prefix of what was sent: every acknowledged batch, plus at most
                # the one in flight when the process died (durable, reply never delivered).
                durable = user.event_count // PER_BATCH
                assert user.event_count % PER_BATCH == 0
                assert acked[t] <= durable <= acked[t] + 1, (t, acked[t], user.event_count)
                sent = [e.item_id for b in range(durable) for e in _batch(items, t, b)]
                expected = vocab.indices(sent[::-1][: bundle.feature_spec.history_len])
                assert list(user.history) == expected.tolist()
                assert set(vocab.indices(sent).tolist()) == set(user.seen)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(30)
    assert (tmp_path / "log" / SNAPSHOT_NAME).exists()  # written at the graceful stop
    logged = sum(len(events) for _, events in read_events(tmp_path / "log"))
    assert logged == sum(counts)  # nothing in the log that the restarted service lacks


def test_embedded_feedback_changes_next_recommend_and_survives_restart(
    bundle, known_users, loop_thread, tmp_path
):
    settings = GatewaySettings.from_env(
        {
            "RECSERVE_MODE": "embedded",
            "RECSERVE_ARTIFACTS": str(bundle.root.parent),
            "RECSERVE_BUNDLE_VERSION": bundle.root.name,
        }
    )
    durability = DurabilitySettings(LogSettings(tmp_path / "log"), snapshot_every=0)

    async def start():
        stages = build_in_process(bundle, prefer_gpu=False, durability=durability)
        pipeline = build_pipeline(settings, bundle, stages)
        server, port = await start_gateway(settings, pipeline, port=0)
        return stages, server, port

    stages, server, port = loop_thread.run(start())
    user = known_users[3]
    try:
        with RecserveClient(f"127.0.0.1:{port}", timeout=30) as client:
            top = client.recommend(user, k=5, exclude_seen=True).items[0].item_id
            assert client.feedback([FeedbackEvent(user, top, "click")]).accepted == 1
            after = {i.item_id for i in client.recommend(user, k=5, exclude_seen=True).items}
            assert top not in after
    finally:
        loop_thread.run(server.stop(None))
    stages.features._store.event_log.close()  # like a crash: no snapshot, log only

    restored, closer = open_durable_store(bundle, durability)
    try:
        item_index = restored.catalog.indices([top])[0]
        state = restored.get_user(user)
        assert item_index in state.seen and state.history[0] == item_index
    finally:
        closer.close()


def test_a_corrupt_log_stops_the_service_at_start_naming_file_and_offset(artifacts, tmp_path):
    log_dir = tmp_path / "log"
    event_log = EventLog(LogSettings(log_dir))
    ends = [
        event_log.append(encode_events([Event("u", str(i), EventKind.VIEW, 1)])).result(30)
        for i in range(3)
    ]
    event_log.close()
    path = segment_path(log_dir, ends[0].segment)
    data = bytearray(path.read_bytes())
    data[ends[0].offset + 14] ^= 0xFF  # the second record's payload
    path.write_bytes(bytes(data))
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSERVE_")}
    env.update(
        RECSERVE_ARTIFACTS=str(artifacts),
        RECSERVE_FEATURE_PORT="0",
        RECSERVE_FEATURE_LOG_DIR=str(log_dir),
    )
    done = subprocess.run(
        [sys.executable, "-m", "services.feature"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 2
    assert str(path) in done.stderr and f"offset {ends[0].offset}" in done.stderr


def test_embedded_reload_hands_the_durable_store_and_its_log_to_the_new_pipeline(
    bundle, known_users, tmp_path
):
    """EmbeddedStages' life cycle at a hot reload: the new bundle's stages get a store of their
    own; at the swap it takes over the live state and the event log. Feedback acknowledged
    before, and feedback sent through the old pipeline after (a spool re-sending), all lands
    in the new pipeline's store, in the log, and in the snapshot a restart loads."""
    settings = GatewaySettings.from_env(
        {"RECSERVE_MODE": "embedded", "RECSERVE_ARTIFACTS": str(bundle.root.parent)}
    )
    durability = DurabilitySettings(LogSettings(tmp_path / "log"), snapshot_every=0)
    user = known_users[5]
    items = [str(i) for i in Vocabulary.load(bundle.path("item_ids.npy")).ids[:3]]

    async def scenario():
        old = build_pipeline(settings, bundle, build_in_process(bundle, durability=durability))
        await old.feedback([Event(user, items[0], EventKind.CLICK, 1_700_000_000)])
        new = build_pipeline(settings, bundle, old.stages.for_bundle(bundle))
        new.stages.adopt(old.stages)
        await old.feedback([Event(user, items[1], EventKind.CLICK, 1_700_000_100)])
        await new.feedback([Event(user, items[2], EventKind.CLICK, 1_700_000_200)])
        answer = await new.recommend(user, 5, FilterSpec(exclude_seen=True))
        return old, new, answer

    old, new, answer = asyncio.run(scenario())
    store = new.stages.features.store
    rows = store.catalog.indices(items[::-1]).tolist()
    assert store.get_user(user).history[:3].tolist() == rows
    assert not set(items) & {i.item_id for i in answer.items} and not answer.fallbacks
    assert old.stages.features.store.latest() is store and store.event_log is not None
    store.event_log.close()  # like a crash: no snapshot, the log only
    restored, closer = open_durable_store(bundle, durability)
    try:
        assert restored.get_user(user).history[:3].tolist() == rows
    finally:
        closer.close()
