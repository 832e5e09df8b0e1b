"""The durable feature store: log before apply, snapshot + replay equals live state."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from services.contract.bundle import Bundle
from services.contract.errors import ConfigError, InvalidArgument
from services.contract.types import Event, EventKind, UserState
from services.feature.config import DurabilitySettings
from services.feature.eventlog import LogSettings, list_segments, read_events
from services.feature.snapshot import SNAPSHOT_NAME, open_durable_store, read_snapshot
from services.feature.store import InMemoryFeatureStore


@pytest.fixture(scope="module")
def ids(bundle: Bundle) -> tuple[list[str], list[str]]:
    store = InMemoryFeatureStore.from_bundle(bundle)
    return store.users.ids[1:20].tolist(), store.catalog.vocab.ids[1:200].tolist()


def durable(directory: Path, **kw) -> DurabilitySettings:
    log_kw = {k: kw.pop(k) for k in ("segment_bytes", "fsync") if k in kw}
    return DurabilitySettings(LogSettings(directory, **log_kw), **kw)


def make_batches(users: list[str], items: list[str], n: int, seed: int = 0) -> list[list[Event]]:
    rng = np.random.default_rng(seed)
    kinds = list(EventKind)
    batches = []
    for b in range(n):
        batch = []
        for _ in range(int(rng.integers(1, 6))):
            kind = kinds[int(rng.integers(4))]
            batch.append(
                Event(
                    str(rng.choice([*users, "brand-new-user"])),
                    str(rng.choice([*items, "unknown-item"])),
                    kind,
                    900_000_000 + 3600 * b,
                    float(rng.integers(1, 6)) if kind is EventKind.RATING else 0.0,
                    float(rng.uniform(1, 50)) if kind is EventKind.PURCHASE else 0.0,
                )
            )
        batches.append(batch)
    return batches


def state_of(store: InMemoryFeatureStore, users: list[str]) -> list[tuple]:
    def one(s: UserState) -> tuple:
        return (
            s.history.tolist(), s.seen.tolist(), s.activity_days.tolist(),
            np.round(s.activity_values, 4).tolist(), s.event_count,
            s.history_times.tolist(), s.history_kinds.tolist(),
        )  # fmt: skip

    return [one(store.get_user(u)) for u in users]


def test_events_are_logged_then_applied_and_survive_a_restart(bundle, ids, tmp_path):
    users, items = ids
    touched = [*users, "brand-new-user"]
    before = state_of(InMemoryFeatureStore.from_bundle(bundle), touched)
    store, durability = open_durable_store(bundle, durable(tmp_path, snapshot_every=0))
    batches = make_batches(users, items, 60)
    futures = [store.submit_events(b) for b in batches]
    assert [f.result(timeout=60) for f in futures] == [len(b) for b in batches]
    live = state_of(store, touched)
    assert live != before
    assert [events for _, events in read_events(tmp_path)] == batches
    assert store.position == durability.log.end
    durability.log.close()  # as after SIGKILL: no snapshot was written
    assert not (tmp_path / SNAPSHOT_NAME).exists()

    replayed, again = open_durable_store(bundle, durable(tmp_path, snapshot_every=0))
    try:
        assert state_of(replayed, touched) == live
    finally:
        again.close()
    assert (tmp_path / SNAPSHOT_NAME).exists()  # written at graceful close


def test_snapshot_plus_replay_equals_live_state(bundle, ids, tmp_path):
    users, items = ids
    touched = [*users, "brand-new-user"]
    settings = durable(tmp_path, snapshot_every=50, segment_bytes=2048, keep_segments=False)
    store, durability = open_durable_store(bundle, settings)
    for b in make_batches(users, items, 120, seed=1):
        store.apply_events(b)
    live = state_of(store, touched)
    end = store.position
    durability.log.close()  # crash-like stop: the tail after the last snapshot is log only
    durability.wait()  # a background snapshot may still be writing
    assert durability.snapshots >= 1
    state, snap_at = read_snapshot(tmp_path, bundle.version)
    assert snap_at <= end and len(state) >= len(users)
    assert min(list_segments(tmp_path)) == snap_at.segment  # covered segments deleted

    restored, again = open_durable_store(bundle, settings)
    try:
        assert state_of(restored, touched) == live
        assert restored.position == end
    finally:
        again.close()
    assert read_snapshot(tmp_path, bundle.version)[1] == end


def test_a_snapshot_of_another_bundle_version_is_ignored(bundle, ids, tmp_path):
    users, items = ids
    store, durability = open_durable_store(bundle, durable(tmp_path))
    for b in make_batches(users, items, 10, seed=2):
        store.apply_events(b)
    live = state_of(store, users)
    durability.close()
    other = dataclasses.replace(bundle, manifest={**bundle.manifest, "version": "other"})
    assert read_snapshot(tmp_path, "other") is None
    restored, again = open_durable_store(other, durable(tmp_path))
    try:
        assert state_of(restored, users) == live  # rebuilt from the bundle + the whole log
    finally:
        again.close()


def test_a_bundle_retrained_on_the_log_replays_only_what_came_after(bundle, ids, tmp_path):
    users, items = ids
    store, durability = open_durable_store(bundle, durable(tmp_path))
    first = make_batches(users, items, 5, seed=3)
    for b in first:
        store.apply_events(b)
    covered = store.position
    later = make_batches(users, items, 4, seed=4)
    for b in later:
        store.apply_events(b)
    durability.close()
    split = {**bundle.manifest["data"]["split"], "feedback_log": covered._asdict()}
    manifest = {
        **bundle.manifest,
        "version": "retrained",
        "data": {**bundle.manifest["data"], "split": split},
    }
    retrained = dataclasses.replace(bundle, manifest=manifest)
    expected = InMemoryFeatureStore.from_bundle(bundle)
    for b in later:
        expected.apply_events(b)
    restored, again = open_durable_store(retrained, durable(tmp_path))
    try:
        assert state_of(restored, users) == state_of(expected, users)
    finally:
        again.close()


def test_invalid_batches_are_rejected_before_anything_is_logged(bundle, tmp_path):
    store, durability = open_durable_store(bundle, durable(tmp_path))
    try:
        with pytest.raises(InvalidArgument):
            store.submit_events(
                [Event("u", "i", EventKind.VIEW, 1), Event("u", "i", EventKind.RATING, 1, 9.0)]
            )
        assert durability.log.records == 0
    finally:
        durability.close()
    assert list(read_events(tmp_path)) == []


def test_durability_settings_from_env(tmp_path):
    env = {
        "RECSERVE_FEATURE_LOG_DIR": str(tmp_path),
        "RECSERVE_FEATURE_FSYNC": "always",
        "RECSERVE_FEATURE_GROUP_DELAY_MS": "2.5",
        "RECSERVE_FEATURE_SEGMENT_MB": "8",
        "RECSERVE_FEATURE_SNAPSHOT_EVERY": "0",
        "RECSERVE_FEATURE_KEEP_SEGMENTS": "false",
    }
    settings = DurabilitySettings.from_env(env)
    assert settings.log == LogSettings(tmp_path, "always", 0.0025, 512, 8 << 20)
    assert settings.snapshot_every == 0 and not settings.keep_segments
    assert DurabilitySettings.from_env({"RECSERVE_FEATURE_LOG_DIR": "none"}).log is None
    # A relative setting is made absolute against the start-up directory (printed at start-up).
    assert DurabilitySettings.from_env({}).log.directory == Path("state/feature-log").resolve()
    with pytest.raises(ConfigError, match="RECSERVE_FEATURE_FSYNC"):
        DurabilitySettings.from_env({"RECSERVE_FEATURE_FSYNC": "sometimes"})
