"""Online user state: profile, recent history, seen items and daily activity per user.

`FeatureStore` is the seam between the in-memory store here (one replica) and the shared store
in services.feature.redis_store (several replicas). Both start from the same bundle state
(services.feature.bundle_state: initial state from the bundle's interactions.parquet, exactly as
training encodes it) and fold live events in with the same code, so they answer identically.
Live events update it immediately; the next get_user sees them. With an event log attached
(services.feature.snapshot.open_durable_store) a batch is applied only after it is durable, on
the log's writer thread and in log order, so `position` always names the log prefix the
in-memory state reflects.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Protocol

import numpy as np

from services.contract.added_items import AddedItem, NewItem
from services.contract.catalog import ItemCatalog
from services.contract.features import FeatureSpec, pad_history
from services.contract.types import Event, ItemInfo, UserState
from services.contract.vocab import Vocabulary
from services.feature.bundle_state import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_IDS,
    BundleFeatures,
    UserRecord,
    activity_value,
    event_day,
    frozen,
)
from services.feature.eventlog import EventLog, LogPosition, encode_events, encode_items
from services.feature.registry import ItemRegistry

__all__ = [
    "DEFAULT_MAX_BATCH",
    "DEFAULT_MAX_IDS",
    "FeatureStore",
    "InMemoryFeatureStore",
    "activity_value",
]


class FeatureStore(Protocol):
    @property
    def bundle_version(self) -> str: ...

    def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState: ...

    def get_users(self, user_ids: Sequence[str]) -> list[UserState]: ...

    def get_items(self, item_ids: Sequence[str]) -> list[ItemInfo]: ...

    def apply_events(self, events: Sequence[Event]) -> int: ...

    def submit_events(self, events: Sequence[Event]) -> Future: ...

    def submit_items(self, items: Sequence[NewItem]) -> Future: ...

    def list_added_items(self, after: int, limit: int) -> tuple[list[AddedItem], int]: ...


class InMemoryFeatureStore(BundleFeatures):
    """Thread-safe; lookups are dict + array slicing (tens of µs)."""

    def __init__(
        self,
        spec: FeatureSpec,
        bundle_version: str,
        users: Vocabulary,
        profiles: np.ndarray,
        catalog: ItemCatalog,
        records: dict[str, UserRecord],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_ids: int = DEFAULT_MAX_IDS,
    ) -> None:
        super().__init__(
            spec, bundle_version, users, profiles, catalog, records,
            max_batch=max_batch, max_ids=max_ids,
        )  # fmt: skip
        self._lock = threading.Lock()
        self.events_applied = 0
        self.unknown_item_events = 0
        self._log: EventLog | None = None
        self.position: LogPosition | None = None  # log prefix reflected in memory
        self.after_apply: Callable[[int], None] | None = None  # called with events applied
        self._successor: InMemoryFeatureStore | None = None  # set by adopt_live_state

    def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState:
        """See BundleFeatures._state for unknown users and recent_items."""
        self._check_get_user(user_id, recent_items)
        with self._lock:
            rec = self._records.get(user_id)
            snapshot = None if rec is None else rec.copy()
        return self._state(user_id, snapshot, recent_items)

    def get_users(self, user_ids: Sequence[str]) -> list[UserState]:
        self._check_ids(user_ids, "user ids")
        return [self.get_user(u) for u in user_ids]

    def apply_events(self, events: Sequence[Event]) -> int:
        """Blocking form of submit_events: returns once the batch is durable and applied."""
        return int(self.submit_events(events).result())

    def submit_events(self, events: Sequence[Event]) -> Future:
        """Validates the whole batch first (all or nothing, InvalidArgument raised here), then
        appends it to the event log (if attached) and applies it in order once durable; the
        future resolves to the number of events (Unavailable if the log cannot write).
        Events for unknown items still count as activity but stay out of history and seen."""
        items = self._check_batch(events)
        done: Future = Future()
        done.set_running_or_notify_cancel()  # a cancelled caller cannot un-log the batch
        if self._log is None:
            self._apply(events, items, None)
            done.set_result(len(events))
            return done
        logged = self._log.append(
            encode_events(events), lambda end: self._apply(events, items, end)
        )
        logged.add_done_callback(lambda f: _chain(f, done, len(events)))
        return done

    def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]:
        """Blocking form of submit_items."""
        return self.submit_items(items).result()

    def submit_items(self, items: Sequence[NewItem]) -> Future:
        """Register items added at runtime (InvalidArgument raised here for a bad batch). Like
        an event batch, the upsert is made durable in the log first and applied on the log's
        writer thread in log order; the future resolves to the entries, rows included."""
        self._check_new_items(items)
        done: Future = Future()
        done.set_running_or_notify_cancel()
        if self._log is None:
            done.set_result(self._apply_items(items, None))
            return done
        applied: list[list[AddedItem]] = []
        logged = self._log.append(
            encode_items(items), lambda end: applied.append(self._apply_items(items, end))
        )
        logged.add_done_callback(lambda f: _chain_result(f, done, applied))
        return done

    def replay_items(self, items: Sequence[NewItem], end: LogPosition | None) -> None:
        """Re-apply a logged items upsert at start-up."""
        self._apply_items(items, end)

    def list_added_items(self, after: int, limit: int) -> tuple[list[AddedItem], int]:
        """(entries changed after `after`, in change order, rows included; the change counter)."""
        with self._lock:
            entries, change, catalog = (
                self.registry.changed_after(after, limit), self.registry.change, self.catalog
            )  # fmt: skip
        return [self._with_row(e, catalog) for e in entries], change

    def _apply_items(self, items: Sequence[NewItem], end: LogPosition | None) -> list[AddedItem]:
        with self._lock:
            if self._successor is not None:  # handed over (adopt_live_state): upserted there
                return self._successor._apply_items(items, end)
            entries = self.registry.upsert(items)
            self._registry_changed()
            catalog = self.catalog
            if end is not None:
                self.position = end
        return [self._with_row(e, catalog) for e in entries]

    def replay(self, events: Sequence[Event], end: LogPosition) -> None:
        """Re-apply a logged batch at start-up (validated when it was first accepted)."""
        self._apply(events, self.catalog.indices([e.item_id for e in events]).tolist(), end)

    def attach_log(self, log: EventLog) -> None:
        """From now on every batch is made durable in `log` before it is applied."""
        self._log = log
        if self.position is None:
            self.position = log.end

    @property
    def event_log(self) -> EventLog | None:
        return self._log

    def latest(self) -> InMemoryFeatureStore:
        """The store that holds the live state now: this one, or the store of the bundle that
        took it over (adopt_live_state), followed to the end."""
        store = self
        while store._successor is not None:
            store = store._successor
        return store

    def _apply(self, events: Sequence[Event], items: list[int], end: LogPosition | None) -> None:
        with self._lock:
            successor = self._successor
            if successor is not None:  # handed over: encoded by id in its bundle, applied there
                successor.replay(events, end)  # (lock order: old store, then new)
                return
            self._apply_locked(events, items, end)
        if self.after_apply is not None:
            self.after_apply(len(events))

    def _apply_locked(
        self, events: Sequence[Event], items: list[int], end: LogPosition | None
    ) -> None:
        by_user: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            by_user.setdefault(event.user_id, []).append(i)
        history_len = self.spec.history_len
        for user_id, rows in by_user.items():  # users are independent; order kept per user
            rec = self._records.get(user_id)
            if rec is None:
                rec = self._records[user_id] = UserRecord.empty(history_len)
            rec.apply_many(
                [items[i] for i in rows],
                [event_day(events[i]) for i in rows],
                [self.activity_value(events[i]) for i in rows],
                [events[i].timestamp for i in rows],
                [self.history_kind(events[i]) for i in rows],
            )
        self.events_applied += len(events)
        self.unknown_item_events += items.count(0)
        if end is not None:
            self.position = end

    def export_state(self) -> tuple[dict[str, tuple[np.ndarray, ...]], LogPosition | None]:
        """A consistent copy of every user's arrays (history, seen, days, values, [count],
        history times, history kinds) and the log position they reflect. Arrays are immutable,
        so only references are copied."""
        state, _, position = self.export_all()
        return state, position

    def export_all(
        self,
    ) -> tuple[dict[str, tuple[np.ndarray, ...]], list[AddedItem], LogPosition | None]:
        """export_state plus the item registry, all at one log position (snapshots)."""
        with self._lock:
            state = {
                user: (r.history, r.seen, r.days, r.values, np.array([r.event_count]),
                       r.times, r.kinds)
                for user, r in self._records.items()
            }  # fmt: skip
            return state, self.registry.entries(), self.position

    def import_registry(self, entries: Sequence[AddedItem]) -> None:
        """Replace the item registry (a snapshot's)."""
        with self._lock:
            self.registry = ItemRegistry()
            for entry in entries:
                self.registry.put(entry)
            self._registry_changed()

    def import_state(self, state: dict[str, tuple[np.ndarray, ...]], position: LogPosition) -> None:
        """Replace the per-user state (a snapshot's) and the log position it reflects. A state
        exported before history times and kinds were kept (5 arrays a user) has them unknown."""
        records = {user: _imported(arrays) for user, arrays in state.items()}
        with self._lock:
            self._records = records
            self.position = position

    # --- hot reload (services.platform.reload): carry live state into a new bundle's store -----

    def adopt_live_state(self, old: InMemoryFeatureStore) -> None:
        """Take over `old`'s per-user state (its bundle's log plus every live event since),
        item rows re-encoded by item id into this store's bundle (items this bundle does not
        know leave history and seen), its item registry, and its event log and snapshots when
        it has them: this store becomes the log's writer, and a batch the log makes durable
        after the hand-over (even one submitted to `old`) is encoded and applied here. Both
        locks are held throughout, so every event is either in the state taken over or applied
        here afterwards: none is lost. Users only this bundle knows keep its records. `old`
        keeps answering reads as it was (a request pinned to its version, for the grace
        period). Runs on the event loop right before the swap."""
        with old._lock, self._lock:
            registry = old.registry.entries()
            self.registry = ItemRegistry()
            for entry in registry:  # added items keep their ordinals; rows follow this bundle
                self.registry.put(entry)
            self._registry_changed()
            table = _index_table(old.catalog, self.catalog)
            history_len = self.spec.history_len
            records = dict(self._records)
            for user_id, rec in old._records.items():
                history = table[rec.history]
                seen = table[rec.seen]
                kept = history > 0  # entries of items this bundle knows, with their events
                records[user_id] = UserRecord(
                    history=frozen(pad_history(history[kept], history_len)),
                    seen=frozen(np.unique(seen[seen > 0])),
                    days=rec.days,
                    values=rec.values,
                    event_count=rec.event_count,
                    times=_kept(rec.times, kept, history_len),
                    kinds=_kept(rec.kinds, kept, history_len),
                )
            self._records = records
            self.events_applied += old.events_applied
            self.unknown_item_events += old.unknown_item_events
            if old._log is not None:
                self._log, self.position = old._log, old.position
                self.after_apply, old.after_apply = old.after_apply, None
            old._successor = self


def _imported(arrays: tuple[np.ndarray, ...]) -> UserRecord:
    """One user's exported arrays (export_state) -> a record; without history times and kinds
    (an older export) they are unknown (0)."""
    history, seen, days, values, count = arrays[:5]
    unknown = np.zeros(history.size, dtype=np.int64)
    times, kinds = arrays[5:7] if len(arrays) >= 7 else (unknown, unknown)
    return UserRecord(
        history=frozen(history), seen=frozen(seen), days=frozen(days), values=frozen(values),
        event_count=int(count[0]), times=frozen(pad_history(times, history.size)),
        kinds=frozen(pad_history(kinds, history.size)),
    )  # fmt: skip


def _kept(values: np.ndarray, kept: np.ndarray, history_len: int) -> np.ndarray:
    """The entries of `values` (aligned with a history; empty = unknown) that `kept` marks,
    in order, 0-padded to int64[H]."""
    return frozen(pad_history(pad_history(values, kept.size)[kept], history_len))


def _index_table(old: ItemCatalog, new: ItemCatalog) -> np.ndarray:
    """int64[len(old)]: old item row -> new item row (0 = unknown in the new bundle), added
    items included (by id)."""
    ids = [old.id_of(row) for row in range(1, len(old))]
    return np.concatenate(([0], new.indices(ids))).astype(np.int64)


def _chain_result(logged: Future, done: Future, applied: list) -> None:
    exc = logged.exception()
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(applied[0])


def _chain(logged: Future, done: Future, count: int) -> None:
    exc = logged.exception()
    if exc is not None:
        done.set_exception(exc)
    else:
        done.set_result(count)
