"""Snapshots of the live per-user state, and start-up recovery: bundle -> snapshot -> log replay.

A snapshot is `<log dir>/snapshot.npz` (numpy, allow_pickle=False), written atomically (temp
file, fsync, os.replace, fsync of the directory). It holds every user's history (with each
entry's event time and kind: `history_times`, `history_kinds`; a snapshot written before they
were kept has neither, and loads with them unknown), seen items, daily activity and event count,
the bundle version its item indices belong to, and the log position it reflects. It is used only
with the same bundle version; otherwise recovery starts from the bundle's own state and replays
the log from the position the bundle was trained up to (manifest data.split.feedback_log,
written by `make retrain`) or from the beginning."""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.contract.added_items import AddedItem, decode_registry, encode_registry
from services.contract.bundle import Bundle
from services.contract.features import pad_history
from services.feature.config import DurabilitySettings
from services.feature.eventlog import (
    EventLog,
    ItemsRecord,
    LogCorruptError,
    LogPosition,
    delete_segments_before,
    read_log,
)
from services.feature.store import InMemoryFeatureStore

log = logging.getLogger(__name__)

SNAPSHOT_NAME = "snapshot.npz"
SNAPSHOT_FORMAT = 1
BUNDLE_LOG_KEY = "feedback_log"  # manifest data.split[...] = {"segment": s, "offset": o}

State = dict[str, tuple[np.ndarray, ...]]


def _concat(parts: list[np.ndarray], dtype: type) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([p.size for p in parts])
    flat = np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype)
    return flat, offsets


def _aligned(rows: list[tuple[np.ndarray, ...]], column: int, history_len: int) -> np.ndarray:
    """int64[U, H]: the users' `column` (history times or kinds), 0 where none is recorded."""
    if rows and all(len(r) > column and r[column].size == history_len for r in rows):
        return np.stack([r[column] for r in rows]).astype(np.int64, copy=False)
    out = np.zeros((len(rows), history_len), dtype=np.int64)
    for i, row in enumerate(rows):
        if len(row) > column:
            out[i] = pad_history(row[column], history_len)
    return out


def write_snapshot(
    directory: Path,
    bundle_version: str,
    state: State,
    position: LogPosition,
    registry: Sequence[AddedItem] = (),
) -> Path:
    """`registry`: the items added at runtime (JSON text in the npz; valid for any bundle)."""
    directory = Path(directory)
    users = sorted(state)
    rows = [state[u] for u in users]
    seen, seen_off = _concat([r[1] for r in rows], np.int64)
    days, days_off = _concat([r[2] for r in rows], np.int64)
    values, _ = _concat([r[3] for r in rows], np.float32)
    history_len = rows[0][0].size if rows else 0
    arrays = {
        "format": np.array(SNAPSHOT_FORMAT, dtype=np.int64),
        "bundle_version": np.array(bundle_version),
        "position": np.array(position, dtype=np.int64),
        "users": np.array(users, dtype=str),
        "history": np.stack([r[0] for r in rows]) if rows else np.zeros((0, history_len)),
        "history_times": _aligned(rows, 5, history_len),
        "history_kinds": _aligned(rows, 6, history_len),
        "seen": seen, "seen_offsets": seen_off,
        "days": days, "days_offsets": days_off, "values": values,
        "event_count": np.array([int(r[4][0]) for r in rows], dtype=np.int64),
        "added_items": np.array(encode_registry(registry)),
    }  # fmt: skip
    target = directory / SNAPSHOT_NAME
    tmp = directory / f".{SNAPSHOT_NAME}.{os.getpid()}.tmp"
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, target)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    return target


def read_snapshot(directory: Path, bundle_version: str) -> tuple[State, LogPosition] | None:
    """(state, position), or None when there is no snapshot or it is for another bundle."""
    path = Path(directory) / SNAPSHOT_NAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["format"]) != SNAPSHOT_FORMAT:
                raise LogCorruptError(f"snapshot {path}: unknown format {int(z['format'])}")
            if str(z["bundle_version"]) != bundle_version:
                log.info("snapshot %s is for bundle %s: ignored", path, z["bundle_version"])
                return None
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError, KeyError) as exc:
        raise LogCorruptError(f"snapshot {path} is unreadable: {exc}") from exc
    so, do = data["seen_offsets"], data["days_offsets"]
    unknown = np.zeros(data["history"].shape, dtype=np.int64)  # written before they were kept
    times, kinds = data.get("history_times", unknown), data.get("history_kinds", unknown)
    state: State = {
        str(user): (
            data["history"][i].copy(),
            data["seen"][so[i] : so[i + 1]].copy(),
            data["days"][do[i] : do[i + 1]].copy(),
            data["values"][do[i] : do[i + 1]].copy(),
            data["event_count"][i : i + 1].copy(),
            times[i].copy(),
            kinds[i].copy(),
        )
        for i, user in enumerate(data["users"].tolist())
    }
    segment, offset = (int(v) for v in data["position"])
    return state, LogPosition(segment, offset)


def read_snapshot_registry(directory: Path) -> tuple[list[AddedItem], LogPosition] | None:
    """The item registry of the snapshot and the log position it reflects, whatever bundle the
    snapshot is for (the registry outlives bundles); None without a snapshot."""
    path = Path(directory) / SNAPSHOT_NAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            text = str(z["added_items"]) if "added_items" in z.files else "[]"
            segment, offset = (int(v) for v in z["position"])
    except (OSError, ValueError, KeyError) as exc:
        raise LogCorruptError(f"snapshot {path} is unreadable: {exc}") from exc
    return decode_registry(text), LogPosition(segment, offset)


def bundle_log_position(bundle: Bundle) -> LogPosition | None:
    """The log prefix a bundle was retrained on (its interactions already hold those events)."""
    entry: Any = bundle.manifest.get("data", {}).get("split", {}).get(BUNDLE_LOG_KEY)
    if not entry:
        return None
    return LogPosition(int(entry["segment"]), int(entry["offset"]))


class Durability:
    """Owns a store's event log and its snapshots (every N events, and on close)."""

    def __init__(self, store: InMemoryFeatureStore, log_: EventLog, settings: DurabilitySettings):
        self._store = store
        self.log = log_
        self.settings = settings
        self.snapshots = 0
        self.last_snapshot: LogPosition | None = None
        self._since = 0
        self._lock = threading.Lock()
        self._running: threading.Thread | None = None
        store.after_apply = self._count

    @property
    def store(self) -> InMemoryFeatureStore:
        """The store that writes the log now (a hot reload hands it to the new bundle's store,
        InMemoryFeatureStore.adopt_live_state); snapshots are of its state, in its version."""
        self._store = self._store.latest()  # the stores handed over are not kept alive here
        return self._store

    def _count(self, n: int) -> None:
        every = self.settings.snapshot_every
        with self._lock:
            self._since += n
            if not every or self._since < every or self._running is not None:
                return
            self._since = 0
            self._running = threading.Thread(
                target=self._background, name="feature-snapshot", daemon=True
            )
            self._running.start()

    def _background(self) -> None:
        try:
            self.snapshot()
        except Exception:  # the log still has everything; retry at next N
            log.exception("feature snapshot failed")
        finally:
            with self._lock:
                self._running = None

    def snapshot(self) -> Path:
        state, registry, position = self.store.export_all()
        start = time.perf_counter()
        path = write_snapshot(
            self.log.directory, self.store.bundle_version, state, position, registry
        )
        self.snapshots += 1
        self.last_snapshot = position
        log.info(
            "snapshot of %d users at log %s in %.3fs",
            len(state), tuple(position), time.perf_counter() - start,
        )  # fmt: skip
        if not self.settings.keep_segments:
            removed = delete_segments_before(self.log.directory, position.segment)
            if removed:
                log.info("deleted %d log segments covered by the snapshot", len(removed))
        return path

    def wait(self) -> None:
        """Until a background snapshot in progress (if any) is written."""
        running = self._running
        if running is not None:
            running.join()

    def close(self) -> None:
        """Drain the log (everything queued becomes durable and applied), snapshot if anything
        changed since the last one, release the directory."""
        self.log.close()
        self.wait()
        if self.store.position != self.last_snapshot:
            self.snapshot()
        self.store.after_apply = None


def recover(store: InMemoryFeatureStore, bundle: Bundle, directory: Path) -> dict[str, Any]:
    """Load the snapshot (its user state if it matches the bundle; its item registry always),
    replay the log after it; -> summary.

    User events replay from the snapshot (same bundle) or from the bundle's own log position;
    items upserts replay from the snapshot's position whatever its bundle (or from the start
    without a snapshot): a retrained bundle does not hold the registry, the log does."""
    start = time.perf_counter()
    snap = read_snapshot(directory, bundle.version)
    position = bundle_log_position(bundle)
    if snap is not None:
        state, position = snap
        store.import_state(state, position)
    items_snap = read_snapshot_registry(directory)
    items_from = None
    if items_snap is not None:
        store.import_registry(items_snap[0])
        items_from = items_snap[1]
    begin = None if position is None or items_from is None else min(position, items_from)
    batches = events = upserts = 0
    for end, record in read_log(directory, begin):
        if isinstance(record, ItemsRecord):
            if items_from is None or end > items_from:
                store.replay_items(record.items, end)
                upserts += 1
        elif position is None or end > position:
            store.replay(record, end)
            batches += 1
            events += len(record)
    return {
        "snapshot": snap is not None,
        "from": tuple(position) if position else None,
        "replayed_batches": batches,
        "replayed_events": events,
        "replayed_item_upserts": upserts,
        "added_items": len(store.registry),
        "seconds": round(time.perf_counter() - start, 3),
    }


def open_durable_store(
    bundle: Bundle, settings: DurabilitySettings, **store_kwargs: int
) -> tuple[InMemoryFeatureStore, Durability | None]:
    """bundle -> snapshot -> log replay -> a store that logs before it applies.
    With durability off (no log dir), a plain in-memory store and None."""
    store = InMemoryFeatureStore.from_bundle(bundle, **store_kwargs)
    if settings.log is None:
        log.warning("feature event log disabled: feedback is lost on restart")
        return store, None
    event_log = EventLog(settings.log)  # locks the directory and truncates a torn tail
    try:
        summary = recover(store, bundle, settings.log.directory)
        store.events_applied = 0
        store.attach_log(event_log)
    except BaseException:
        event_log.close()
        raise
    log.info("feature state recovered from %s: %s", settings.log.directory, summary)
    return store, Durability(store, event_log, settings)
