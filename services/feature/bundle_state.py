"""What every feature store builds from a bundle, identical in every replica: the item catalog,
user profiles and vocabularies, the base per-user state from interactions.parquet, request
validation and the assembly of a UserState. Stores differ only in where live events live
(services.feature.store: process memory; services.feature.redis_store: Redis).

Base state is encoded exactly as training encodes it (events stably sorted by user then time;
history = most recent first). A live event is folded in with `UserRecord.apply_many`, the one
definition of how an event changes a user's state.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.common.added_items import AddedItem, NewItem, validate_new_items
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
from services.feature.registry import ItemRegistry

DEFAULT_MAX_BATCH = 10_000
DEFAULT_MAX_IDS = 1_000


def activity_value(event: Event) -> float:
    """What one event adds to its day's activity: money for purchases, 1.0 per interaction
    otherwise (the canonical event schema's `value`, so live and training activity agree)."""
    return float(event.value) if event.kind is EventKind.PURCHASE else 1.0


def event_day(event: Event) -> int:
    return event.timestamp // SECONDS_PER_DAY


def frozen(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


EMPTY_I64 = frozen(np.zeros(0, dtype=np.int64))
EMPTY_F32 = frozen(np.zeros(0, dtype=np.float32))


@dataclass(slots=True)
class UserRecord:
    """Arrays are replaced, never mutated (copy-on-write), so UserStates handed out stay valid
    and `copy()` is cheap."""

    history: np.ndarray  # int64[H], most recent first, 0-padded
    seen: np.ndarray = field(default_factory=lambda: EMPTY_I64)  # int64[S] ascending
    days: np.ndarray = field(default_factory=lambda: EMPTY_I64)  # int64[A] ascending
    values: np.ndarray = field(default_factory=lambda: EMPTY_F32)  # float32[A]
    event_count: int = 0

    @classmethod
    def empty(cls, history_len: int) -> UserRecord:
        return cls(history=frozen(np.zeros(history_len, dtype=np.int64)))

    def copy(self) -> UserRecord:
        return UserRecord(self.history, self.seen, self.days, self.values, self.event_count)

    def apply(self, item_index: int, day: int, value: float) -> None:
        self.apply_many([item_index], [day], [value])

    def apply_many(
        self, item_indices: Sequence[int], days: Sequence[int], values: Sequence[float]
    ) -> None:
        """Events in order (item index, 0 = unknown item; day; activity value). The one
        definition of how events change a user's state: known items shift into the front of
        history and join seen; each day's activity accumulates in float32, event by event."""
        items = np.asarray(item_indices, dtype=np.int64)
        known = items[items > 0]
        if known.size:
            recent = np.concatenate((known[::-1], self.history))
            self.history = frozen(pad_history(recent, self.history.size))
            self.seen = frozen(np.union1d(self.seen, known))
        if items.size:  # np.add.at adds in order, in float32: as one `+=` per event would
            day_arr = np.asarray(days, dtype=np.int64)
            all_days = np.union1d(self.days, day_arr)
            totals = np.zeros(all_days.size, dtype=np.float32)
            totals[np.searchsorted(all_days, self.days)] = self.values
            add = np.asarray(values, dtype=np.float32)
            np.add.at(totals, np.searchsorted(all_days, day_arr), add)
            self.days, self.values = frozen(all_days), frozen(totals)
        self.event_count += len(items)


def validate_event(event: Event) -> None:
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


class BundleFeatures:
    """The bundle half of a feature store. Subclasses keep live events and implement get_user,
    get_users and apply_events with `_check_*` + `_state` so validation and output agree."""

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
        self.spec = spec
        self._version = bundle_version
        self.users = users
        self._profiles = frozen(profiles)  # int64[n_users + 1, P], row 0 zeros
        self.catalog = catalog
        self._records = records
        self.max_batch = max_batch
        self.max_ids = max_ids
        # Items added at runtime: the registry, and the catalog extended with them (replaced
        # copy-on-write, so a reader holding the old catalog stays consistent).
        self._base_catalog = catalog
        self.registry = ItemRegistry()

    @classmethod
    def from_bundle(cls, bundle: Bundle, **kwargs: Any) -> Self:
        """kwargs go to the subclass constructor (limits, connections, ...)."""
        spec = bundle.feature_spec
        users = Vocabulary.load(bundle.path("user_ids.npy"))
        catalog = ItemCatalog.from_bundle(bundle)
        profiles = load_profiles(bundle, spec, users)
        records = load_records(bundle, spec, catalog.vocab)
        return cls(spec, bundle.version, users, profiles, catalog, records, **kwargs)

    @property
    def bundle_version(self) -> str:
        return self._version

    def get_items(self, item_ids: Sequence[str]) -> list[ItemInfo]:
        """NotFound for an unknown id."""
        self._check_ids(item_ids, "item ids")
        return self.catalog.by_ids(item_ids)

    # --- items added at runtime (services.common.added_items) -------------------------------

    def _registry_changed(self) -> None:
        """Rebuild the extended catalog from the registry (caller holds the store's lock)."""
        self.catalog = self._base_catalog.with_added(self.registry.items())

    def _with_row(self, entry: AddedItem, catalog: ItemCatalog | None = None) -> AddedItem:
        """The entry with its row in this bundle (0 when the bundle itself has the id)."""
        catalog = catalog or self.catalog
        row = catalog.index(entry.item.item_id)
        return replace(entry, row=row if catalog.is_added(row) else 0)

    def _check_new_items(self, items: Sequence[NewItem]) -> None:
        validate_new_items(items, max_items=self.max_ids)
        n_rows = self._base_catalog.n_base_rows
        for item in items:
            if not 0 <= item.proxy_row < n_rows:
                raise InvalidArgument(
                    f"item {item.item_id[:40]!r}: proxy_row {item.proxy_row} not in 0..{n_rows - 1}"
                )

    def _check_ids(self, ids: Sequence[str], what: str) -> None:
        if len(ids) > self.max_ids:
            raise InvalidArgument(f"{len(ids)} {what}; at most {self.max_ids} per call")
        if any(not i for i in ids):
            raise InvalidArgument(f"empty id among {what}")

    def _check_get_user(self, user_id: str, recent_items: Sequence[str]) -> None:
        if not user_id:
            raise InvalidArgument("user_id is empty")
        if len(recent_items) > self.max_ids:
            raise InvalidArgument(f"{len(recent_items)} recent items; at most {self.max_ids}")

    def _check_batch(self, events: Sequence[Event]) -> list[int]:
        """Validates a whole ApplyEvents batch (all or nothing) -> item index per event."""
        if len(events) > self.max_batch:
            raise InvalidArgument(f"{len(events)} events in one batch; at most {self.max_batch}")
        for event in events:
            validate_event(event)
        return self.catalog.indices([e.item_id for e in events]).tolist()

    def _state(
        self, user_id: str, rec: UserRecord | None, recent_items: Sequence[str] = ()
    ) -> UserState:
        """Unknown users get known=False, user_index 0, a zero profile and whatever history live
        events gave them. recent_items (most recent first) go in front of the stored history and
        count as seen, for this call only; unknown recent items are skipped."""
        row = self.users.index(user_id)
        if rec is None:
            history = np.zeros(self.spec.history_len, dtype=np.int64)
            seen, days, values, count = EMPTY_I64, EMPTY_I64, EMPTY_F32, 0
        else:
            history, seen, days, values, count = (
                rec.history, rec.seen, rec.days, rec.values, rec.event_count
            )  # fmt: skip
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


def load_profiles(bundle: Bundle, spec: FeatureSpec, users: Vocabulary) -> np.ndarray:
    table = pq.read_table(bundle.path("users.parquet")).to_pydict()
    profiles = np.zeros((len(users), len(spec.profile_fields)), dtype=np.int64)
    rows = np.asarray(table["user_index"], dtype=np.int64)
    ages = [int(a) if a is not None else 0 for a in table["age"]]
    profiles[rows] = encode_profiles(spec, ages, table["gender"], table["occupation"])
    profiles[0] = 0
    return profiles


def load_records(bundle: Bundle, spec: FeatureSpec, items: Vocabulary) -> dict[str, UserRecord]:
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

    records: dict[str, UserRecord] = {}
    for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
        its = item_index[start:end]
        known = its[its > 0]
        days, day_values = daily_activity(timestamps[start:end], values[start:end])
        records[str(names[codes[start]])] = UserRecord(
            history=frozen(pad_history(known[::-1], spec.history_len)),
            seen=frozen(np.unique(known)),
            days=frozen(days),
            values=frozen(day_values),
            event_count=end - start,
        )
    return records
