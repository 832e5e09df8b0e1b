"""Online user state: profile, recent history, seen items and daily activity per user.

`FeatureStore` is the seam between the in-memory store here (one replica) and a shared store
(Redis, several replicas). Initial state comes from the bundle's interactions.parquet, exactly as
training encodes it (events stably sorted by user then time; history = most recent first).
Live events update it immediately; the next get_user sees them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.common.bundle import Bundle
from services.common.catalog import ItemCatalog
from services.common.errors import InvalidArgument
from services.common.features import (
    SECONDS_PER_DAY,
    FeatureSpec,
    daily_activity,
    encode_profiles,
    pad_history,
)
from services.common.types import Event, EventKind, ItemInfo, UserState
from services.common.vocab import Vocabulary

DEFAULT_MAX_BATCH = 10_000
DEFAULT_MAX_IDS = 1_000


class FeatureStore(Protocol):
    @property
    def bundle_version(self) -> str: ...

    def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState: ...

    def get_users(self, user_ids: Sequence[str]) -> list[UserState]: ...

    def get_items(self, item_ids: Sequence[str]) -> list[ItemInfo]: ...

    def apply_events(self, events: Sequence[Event]) -> int: ...


def activity_value(event: Event) -> float:
    """What one event adds to its day's activity: money for purchases, 1.0 per interaction
    otherwise (the canonical event schema's `value`, so live and training activity agree)."""
    return float(event.value) if event.kind is EventKind.PURCHASE else 1.0


def _frozen(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


_EMPTY_I64 = _frozen(np.zeros(0, dtype=np.int64))
_EMPTY_F32 = _frozen(np.zeros(0, dtype=np.float32))


@dataclass(slots=True)
class _UserRecord:
    """Arrays are replaced, never mutated (copy-on-write), so UserStates handed out stay valid."""

    history: np.ndarray  # int64[H], most recent first, 0-padded
    seen: np.ndarray = field(default_factory=lambda: _EMPTY_I64)  # int64[S] ascending
    days: np.ndarray = field(default_factory=lambda: _EMPTY_I64)  # int64[A] ascending
    values: np.ndarray = field(default_factory=lambda: _EMPTY_F32)  # float32[A]
    event_count: int = 0

    def apply(self, item_index: int, day: int, value: float) -> None:
        if item_index > 0:
            self.history = _frozen(np.concatenate(([item_index], self.history[:-1])))
            pos = int(np.searchsorted(self.seen, item_index))
            if pos == self.seen.size or self.seen[pos] != item_index:
                self.seen = _frozen(np.insert(self.seen, pos, item_index))
        pos = int(np.searchsorted(self.days, day))
        if pos < self.days.size and self.days[pos] == day:
            values = self.values.copy()
            values[pos] += value
            self.values = _frozen(values)
        else:
            self.days = _frozen(np.insert(self.days, pos, day))
            self.values = _frozen(np.insert(self.values, pos, np.float32(value)))
        self.event_count += 1


def _validate(event: Event) -> None:
    if not event.user_id or not event.item_id:
        raise InvalidArgument("event with an empty user_id or item_id")
    if event.kind is EventKind.RATING and not 1.0 <= event.rating <= 5.0:
        raise InvalidArgument(
            f"event for user {event.user_id!r}: rating {event.rating} not in 1..5"
        )
    if not np.isfinite(event.value) or event.value < 0:
        raise InvalidArgument(f"event for user {event.user_id!r}: value must be finite and >= 0")
    if event.timestamp < 0:
        raise InvalidArgument(f"event for user {event.user_id!r}: negative timestamp")


class InMemoryFeatureStore:
    """Thread-safe; lookups are dict + array slicing (tens of µs)."""

    def __init__(
        self,
        spec: FeatureSpec,
        bundle_version: str,
        users: Vocabulary,
        profiles: np.ndarray,
        catalog: ItemCatalog,
        records: dict[str, _UserRecord],
        *,
        max_batch: int = DEFAULT_MAX_BATCH,
        max_ids: int = DEFAULT_MAX_IDS,
    ) -> None:
        self.spec = spec
        self._version = bundle_version
        self.users = users
        self._profiles = _frozen(profiles)  # int64[n_users + 1, P], row 0 zeros
        self.catalog = catalog
        self._records = records
        self._lock = threading.Lock()
        self.max_batch = max_batch
        self.max_ids = max_ids
        self.events_applied = 0
        self.unknown_item_events = 0

    @classmethod
    def from_bundle(
        cls, bundle: Bundle, *, max_batch: int = DEFAULT_MAX_BATCH, max_ids: int = DEFAULT_MAX_IDS
    ) -> InMemoryFeatureStore:
        spec = bundle.feature_spec
        users = Vocabulary.load(bundle.path("user_ids.npy"))
        catalog = ItemCatalog.from_bundle(bundle)
        profiles = _load_profiles(bundle, spec, users)
        records = _load_records(bundle, spec, catalog.vocab)
        return cls(
            spec, bundle.version, users, profiles, catalog, records,
            max_batch=max_batch, max_ids=max_ids,
        )  # fmt: skip

    @property
    def bundle_version(self) -> str:
        return self._version

    def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState:
        """Unknown users get known=False, user_index 0, a zero profile and whatever history live
        events gave them. recent_items (most recent first) go in front of the stored history and
        count as seen, for this call only; unknown recent items are skipped."""
        if not user_id:
            raise InvalidArgument("user_id is empty")
        if len(recent_items) > self.max_ids:
            raise InvalidArgument(f"{len(recent_items)} recent items; at most {self.max_ids}")
        row = self.users.index(user_id)
        with self._lock:
            rec = self._records.get(user_id)
            if rec is not None:
                history, seen, days, values, count = (
                    rec.history, rec.seen, rec.days, rec.values, rec.event_count
                )  # fmt: skip
        if rec is None:
            history = np.zeros(self.spec.history_len, dtype=np.int64)
            seen, days, values, count = _EMPTY_I64, _EMPTY_I64, _EMPTY_F32, 0
        if recent_items:
            recent = self.catalog.indices(recent_items)
            recent = recent[recent > 0]
            if recent.size:
                history = pad_history(np.concatenate((recent, history[history > 0])), history.size)
                seen = np.union1d(seen, recent)
        return UserState(
            user_id=user_id,
            known=row > 0,
            user_index=row,
            profile=self._profiles[row],
            history=history,
            seen=seen,
            activity_days=days,
            activity_values=values,
            event_count=count,
        )

    def get_users(self, user_ids: Sequence[str]) -> list[UserState]:
        self._check_ids(user_ids, "user ids")
        return [self.get_user(u) for u in user_ids]

    def get_items(self, item_ids: Sequence[str]) -> list[ItemInfo]:
        """NotFound for an unknown id."""
        self._check_ids(item_ids, "item ids")
        return self.catalog.by_ids(item_ids)

    def apply_events(self, events: Sequence[Event]) -> int:
        """Validates the whole batch first (all or nothing), then applies in order.
        Events for unknown items still count as activity but stay out of history and seen."""
        if len(events) > self.max_batch:
            raise InvalidArgument(f"{len(events)} events in one batch; at most {self.max_batch}")
        for event in events:
            _validate(event)
        items = self.catalog.indices([e.item_id for e in events]).tolist()
        history_len = self.spec.history_len
        with self._lock:
            for event, item in zip(events, items, strict=True):
                rec = self._records.get(event.user_id)
                if rec is None:
                    rec = _UserRecord(history=_frozen(np.zeros(history_len, dtype=np.int64)))
                    self._records[event.user_id] = rec
                rec.apply(item, event.timestamp // SECONDS_PER_DAY, activity_value(event))
            self.events_applied += len(events)
            self.unknown_item_events += items.count(0)
        return len(events)

    def _check_ids(self, ids: Sequence[str], what: str) -> None:
        if len(ids) > self.max_ids:
            raise InvalidArgument(f"{len(ids)} {what}; at most {self.max_ids} per call")
        if any(not i for i in ids):
            raise InvalidArgument(f"empty id among {what}")

    # --- hot reload (services.common.reload): carry live state into a new bundle's store -----

    def adopt_live_state(self, old: InMemoryFeatureStore) -> None:
        """Take over `old`'s per-user state (its bundle's log plus every live event since),
        item indices remapped by item id into this store's vocabulary (items this bundle does
        not know leave history and seen). Users only this bundle knows keep its records. Runs
        on the event loop right before the swap, so no event is lost in between."""
        table = _index_table(old.catalog.vocab, self.catalog.vocab)
        history_len = self.spec.history_len
        with old._lock:
            taken = list(old._records.items())
            applied, unknown = old.events_applied, old.unknown_item_events
        records = dict(self._records)
        for user_id, rec in taken:
            history = table[rec.history]
            seen = table[rec.seen]
            records[user_id] = _UserRecord(
                history=_frozen(pad_history(history[history > 0], history_len)),
                seen=_frozen(np.unique(seen[seen > 0])),
                days=rec.days,
                values=rec.values,
                event_count=rec.event_count,
            )
        with self._lock:
            self._records = records
            self.events_applied += applied
            self.unknown_item_events += unknown


def _index_table(old: Vocabulary, new: Vocabulary) -> np.ndarray:
    """int64[len(old)]: old item index -> new item index (0 = unknown in the new bundle)."""
    return np.concatenate(([0], new.indices(old.ids.tolist()))).astype(np.int64)


def _load_profiles(bundle: Bundle, spec: FeatureSpec, users: Vocabulary) -> np.ndarray:
    table = pq.read_table(bundle.path("users.parquet")).to_pydict()
    profiles = np.zeros((len(users), len(spec.profile_fields)), dtype=np.int64)
    rows = np.asarray(table["user_index"], dtype=np.int64)
    ages = [int(a) if a is not None else 0 for a in table["age"]]
    profiles[rows] = encode_profiles(spec, ages, table["gender"], table["occupation"])
    profiles[0] = 0
    return profiles


def _load_records(bundle: Bundle, spec: FeatureSpec, items: Vocabulary) -> dict[str, _UserRecord]:
    """Vectorised per-user grouping of the training event log."""
    table = pq.read_table(
        bundle.path("interactions.parquet"), columns=["user_id", "item_id", "timestamp", "value"]
    )
    if table.num_rows == 0:
        return {}
    users = pc.dictionary_encode(table.column("user_id").combine_chunks())
    codes = users.indices.to_numpy(zero_copy_only=False).astype(np.int64)
    names = users.dictionary.to_pylist()
    item_col = table.column("item_id").cast(pa.string())
    rows = pc.index_in(item_col, value_set=pa.array(items.ids.tolist(), type=pa.string()))
    item_index = pc.fill_null(rows, -1).to_numpy(zero_copy_only=False).astype(np.int64) + 1
    timestamps = table.column("timestamp").to_numpy().astype(np.int64)
    values = np.nan_to_num(table.column("value").to_numpy(zero_copy_only=False), nan=0.0)

    order = np.lexsort((np.arange(codes.size), timestamps, codes))  # stable: user, then time
    codes, item_index = codes[order], item_index[order]
    timestamps, values = timestamps[order], values[order]
    cuts = np.flatnonzero(np.diff(codes)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, codes.size]

    records: dict[str, _UserRecord] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        its = item_index[start:end]
        known = its[its > 0]
        days, day_values = daily_activity(timestamps[start:end], values[start:end])
        records[str(names[codes[start]])] = _UserRecord(
            history=_frozen(pad_history(known[::-1], spec.history_len)),
            seen=_frozen(np.unique(known)),
            days=_frozen(days),
            values=_frozen(day_values),
            event_count=end - start,
        )
    return records
