"""What every feature store builds from a bundle, identical in every replica: the item catalog,
user profiles and vocabularies, the base per-user state from interactions.parquet, request
validation and the assembly of a UserState. Stores differ only in where live events live
(services.feature.store: process memory; services.feature.redis_store: Redis).

Base state is encoded exactly as training encodes it (events stably sorted by user then time;
history = most recent first). A live event is folded in with `UserRecord.apply_many`, the one
definition of how an event changes a user's state. Every history entry keeps the event behind it
(its unix time and its token, services.contract.features.event_tokens; 0 = unknown), entry by
entry.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.contract.added_items import AddedItem, NewItem, validate_new_items
from services.contract.bundle import Bundle, DatasetFacts
from services.contract.catalog import ItemCatalog
from services.contract.errors import InvalidArgument
from services.contract.features import (
    SECONDS_PER_DAY,
    FeatureSpec,
    coded_event_tokens,
    encode_profiles,
    event_token,
    latest_values,
    pad_history,
)
from services.contract.types import Event, EventKind, ItemInfo, UserState
from services.contract.vocab import Vocabulary
from services.feature.registry import ItemRegistry

DEFAULT_MAX_BATCH = 10_000
DEFAULT_MAX_IDS = 1_000


def activity_value(event: Event, money: bool) -> float:
    """What one event adds to its day's activity, as the bundle's value model learned it
    (training.value_step.value_view): with money, a purchase's amount and 0 for any other event
    (which still makes the day active); without (engagement), 1.0 per event."""
    if not money:
        return 1.0
    return float(event.value) if event.kind is EventKind.PURCHASE else 0.0


def event_day(event: Event) -> int:
    return event.timestamp // SECONDS_PER_DAY


def history_kind(event: Event, scale: tuple[float, float] = (1.0, 5.0)) -> int:
    """The token of the event behind a history entry (event_token): its kind, and a rating
    event's rating by its step on `scale` (the dataset's rating scale)."""
    rating = float(event.rating) if event.kind is EventKind.RATING else math.nan
    return event_token(event.kind.value, rating, scale)


VIEW_TOKEN = event_token(EventKind.VIEW.value)  # the recent items a request brings


def frozen(arr: np.ndarray) -> np.ndarray:
    arr.flags.writeable = False
    return arr


EMPTY_I64 = frozen(np.zeros(0, dtype=np.int64))
EMPTY_F32 = frozen(np.zeros(0, dtype=np.float32))


@dataclass(slots=True)
class UserRecord:
    """Arrays are replaced, never mutated (copy-on-write), so UserStates handed out stay valid
    and `copy()` is cheap. times / kinds describe the event behind each history entry (unix s,
    event token; 0 = unknown); empty = none recorded (a state saved before they were kept)."""

    history: np.ndarray  # int64[H], most recent first, 0-padded
    seen: np.ndarray = field(default_factory=lambda: EMPTY_I64)  # int64[S] ascending
    days: np.ndarray = field(default_factory=lambda: EMPTY_I64)  # int64[A] ascending
    values: np.ndarray = field(default_factory=lambda: EMPTY_F32)  # float32[A]
    event_count: int = 0
    times: np.ndarray = field(default_factory=lambda: EMPTY_I64)  # int64[H], with history
    kinds: np.ndarray = field(default_factory=lambda: EMPTY_I64)  # int64[H], with history

    @classmethod
    def empty(cls, history_len: int) -> UserRecord:
        zeros = frozen(np.zeros(history_len, dtype=np.int64))
        return cls(history=zeros, times=zeros, kinds=zeros)

    def copy(self) -> UserRecord:
        return UserRecord(
            self.history, self.seen, self.days, self.values, self.event_count,
            self.times, self.kinds,
        )  # fmt: skip

    def apply(self, item_index: int, day: int, value: float, at: int, kind: int) -> None:
        """One event (apply_many)."""
        self.apply_many([item_index], [day], [value], [at], [kind])

    def apply_many(
        self,
        item_indices: Sequence[int],
        days: Sequence[int],
        values: Sequence[float],
        times: Sequence[int],
        kinds: Sequence[int],
    ) -> None:
        """Events in order (item index, 0 = unknown item; day; activity value; unix time and
        event token, 0 = unknown). The one definition of how events change a user's state:
        known items shift into the front of history, their times and kinds with them, and join
        seen; each day's activity accumulates in float32, event by event."""
        items = np.asarray(item_indices, dtype=np.int64)
        is_known = items > 0
        known = items[is_known]
        if known.size:
            h = self.history.size
            self.history = frozen(pad_history(np.concatenate((known[::-1], self.history)), h))
            self.times = _shifted(times, is_known, self.times, h)
            self.kinds = _shifted(kinds, is_known, self.kinds, h)
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


def _shifted(new: Sequence[int], keep: np.ndarray, old: np.ndarray, history_len: int) -> np.ndarray:
    """The kept `new` values (event order) in front of `old`, most recent first, as history
    shifts: int64[H], 0 where unknown."""
    front = np.asarray(new, dtype=np.int64)[keep][::-1][:history_len]
    out = np.zeros(history_len, dtype=np.int64)
    out[: front.size] = front
    rest = old[: history_len - front.size]
    out[front.size : front.size + rest.size] = rest
    return frozen(out)


def _full(values: np.ndarray, history_len: int) -> np.ndarray:
    """int64[H]: `values` as they are when they have H entries, else padded / truncated."""
    return values if values.size == history_len else pad_history(values, history_len)


def validate_event(event: Event, scale: tuple[float, float] = (1.0, 5.0)) -> None:
    """scale: the dataset's rating scale (manifest dataset.rating_scale)."""
    if not event.user_id or not event.item_id:
        raise InvalidArgument("event with an empty user_id or item_id")
    low, high = scale
    if event.kind is EventKind.RATING and not low <= event.rating <= high:
        raise InvalidArgument(
            f"event for user {event.user_id!r}: rating {event.rating:g} not in {low:g}..{high:g}"
        )
    if not np.isfinite(event.value) or event.value < 0:
        raise InvalidArgument(f"event for user {event.user_id!r}: value must be finite and >= 0")
    if event.timestamp < 0:
        raise InvalidArgument(f"event for user {event.user_id!r}: negative timestamp")


class BundleFeatures:
    """The bundle half of a feature store. Subclasses keep live events and implement get_user,
    get_users and apply_events with `_check_*` + `_state` so validation and output agree."""

    dataset: DatasetFacts = DatasetFacts()  # from_bundle sets the bundle's own

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
        store = cls(spec, bundle.version, users, profiles, catalog, records, **kwargs)
        store.dataset = bundle.dataset
        return store

    def activity_value(self, event: Event) -> float:
        return activity_value(event, self.dataset.has_money)

    def history_kind(self, event: Event) -> int:
        """The event's token on this bundle's rating scale (history_kind)."""
        return history_kind(event, self.dataset.rating_scale)

    @property
    def bundle_version(self) -> str:
        return self._version

    def get_items(self, item_ids: Sequence[str]) -> list[ItemInfo]:
        """NotFound for an unknown id."""
        self._check_ids(item_ids, "item ids")
        return self.catalog.by_ids(item_ids)

    # --- items added at runtime (services.contract.added_items) -------------------------------

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
            validate_event(event, self.dataset.rating_scale)
        return self.catalog.indices([e.item_id for e in events]).tolist()

    def _state(
        self, user_id: str, rec: UserRecord | None, recent_items: Sequence[str] = ()
    ) -> UserState:
        """Unknown users get known=False, user_index 0, a zero profile and whatever history live
        events gave them. recent_items (most recent first) go in front of the stored history and
        count as seen, for this call only, as views made now (the request's clock); unknown
        recent items are skipped. history_times / history_kinds are int64[H], aligned with
        history (0 = unknown)."""
        row = self.users.index(user_id)
        h = self.spec.history_len
        if rec is None:
            history, times, kinds = (np.zeros(h, dtype=np.int64) for _ in range(3))
            seen, days, values, count = EMPTY_I64, EMPTY_I64, EMPTY_F32, 0
        else:
            history, seen, days, values, count = (
                rec.history, rec.seen, rec.days, rec.values, rec.event_count
            )  # fmt: skip
            times, kinds = _full(rec.times, h), _full(rec.kinds, h)
        if recent_items:
            recent = self.catalog.indices(recent_items)
            recent = recent[recent > 0]
            if recent.size:
                stored = history > 0
                now = np.full(recent.size, int(time.time()), dtype=np.int64)
                views = np.full(recent.size, VIEW_TOKEN, dtype=np.int64)
                history = pad_history(np.concatenate((recent, history[stored])), h)
                times = pad_history(np.concatenate((now, times[stored])), h)
                kinds = pad_history(np.concatenate((views, kinds[stored])), h)
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
            history_times=times,
            history_kinds=kinds,
        )


def load_profiles(bundle: Bundle, spec: FeatureSpec, users: Vocabulary) -> np.ndarray:
    """int64[U, P]: every user's encoded declared attributes (users.parquet), row 0 zeros."""
    table = pq.read_table(bundle.path("users.parquet")).to_pydict()
    profiles = np.zeros((len(users), len(spec.profile_cardinalities)), dtype=np.int64)
    rows = np.asarray(table["user_index"], dtype=np.int64)
    profiles[rows] = encode_profiles(spec, table, rows.size)
    profiles[0] = 0
    return profiles


def load_records(
    bundle: Bundle,
    spec: FeatureSpec,
    items: Vocabulary,
    rating_scale: tuple[float, float] | None = None,
) -> dict[str, UserRecord]:
    """Vectorised per-user grouping of the training event log. Each history entry's event:
    its `timestamp` and its token from `event_type` ("" when the bundle has no such column)
    and `rating` (event_tokens on `rating_scale`, default the bundle's dataset's)."""
    path = bundle.path("interactions.parquet")
    present = set(pq.read_schema(path).names)
    optional = [c for c in ("rating", "event_type") if c in present]
    table = pq.read_table(path, columns=["user_id", "item_id", "timestamp", "value", *optional])
    if table.num_rows == 0:
        return {}
    scale = bundle.dataset.rating_scale if rating_scale is None else rating_scale
    kinds = _event_tokens(table, scale)
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
    timestamps, values, kinds = timestamps[order], values[order], kinds[order]
    cuts = np.flatnonzero(np.diff(codes)) + 1
    starts, ends = np.r_[0, cuts], np.r_[cuts, codes.size]
    # Every user's arrays at once (a million users load in seconds, not a minute); the loop
    # below only slices them. Same values as pad_history / np.unique / daily_activity per user.
    group = np.repeat(np.arange(starts.size), ends - starts)  # the user of each event
    known, n, length = item_index > 0, starts.size, spec.history_len
    history = latest_values(group, known, item_index, n, length)
    times = latest_values(group, known, timestamps, n, length)
    history_kinds = latest_values(group, known, kinds, n, length)
    seen_items, seen_bounds = _seen(group, item_index, starts.size)
    days, day_values, day_bounds = _daily(group, timestamps, values, starts.size)

    for whole in (history, times, history_kinds, seen_items, days, day_values):
        frozen(whole)  # so every slice below is read-only too (a view inherits the flag)
    seen_at, day_at = seen_bounds.tolist(), day_bounds.tolist()
    records: dict[str, UserRecord] = {}
    for g, (start, end) in enumerate(zip(starts.tolist(), ends.tolist(), strict=True)):
        records[str(names[codes[start]])] = UserRecord(
            history=history[g],
            seen=seen_items[seen_at[g] : seen_at[g + 1]],
            days=days[day_at[g] : day_at[g + 1]],
            values=day_values[day_at[g] : day_at[g + 1]],
            event_count=end - start,
            times=times[g],
            kinds=history_kinds[g],
        )
    return records


def _event_tokens(table: pa.Table, scale: tuple[float, float]) -> np.ndarray:
    """int64[N]: coded_event_tokens of the log's event_type ("" for a null or without the
    column) and rating (NaN = none) columns."""
    n = table.num_rows
    if "event_type" in table.column_names:
        types = pc.fill_null(table.column("event_type").cast(pa.string()), "").combine_chunks()
        encoded = pc.dictionary_encode(types)
        names = encoded.dictionary.to_pylist()
        codes = encoded.indices.to_numpy(zero_copy_only=False)
    else:
        names, codes = [""], np.zeros(n, dtype=np.int64)
    if "rating" in table.column_names:
        column = table.column("rating").cast(pa.float64())
        ratings = column.to_numpy(zero_copy_only=False).astype(np.float64)
    else:
        ratings = np.full(n, np.nan)
    return coded_event_tokens(names, codes, ratings, scale)


def _bounds(owner: np.ndarray, n_groups: int) -> np.ndarray:
    """int64[G + 1]: group g's rows are [bounds[g], bounds[g + 1]) of an owner-sorted array."""
    return np.r_[0, np.cumsum(np.bincount(owner, minlength=n_groups))]


def _seen(group: np.ndarray, items: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Each user's distinct known items, ascending (np.unique), concatenated + bounds."""
    known = items > 0
    owner, item = group[known], items[known]
    order = np.lexsort((item, owner))
    owner, item = owner[order], item[order]
    first = np.r_[True, (owner[1:] != owner[:-1]) | (item[1:] != item[:-1])]
    return item[first], _bounds(owner[first], n_groups)


def _daily(
    group: np.ndarray, timestamps: np.ndarray, values: np.ndarray, n_groups: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """daily_activity for every user: (days int64, value per day float32, bounds). Events are
    sorted by user then time; the sums are float64 added in event order, as np.add.at does."""
    day = timestamps.astype(np.int64) // SECONDS_PER_DAY
    new_day = np.r_[True, (group[1:] != group[:-1]) | (day[1:] != day[:-1])]
    day_of_event = np.cumsum(new_day) - 1
    sums = np.zeros(int(new_day.sum()), dtype=np.float64)
    np.add.at(sums, day_of_event, np.asarray(values, dtype=np.float64))
    starts = np.flatnonzero(new_day)
    return day[starts], sums.astype(np.float32), _bounds(group[starts], n_groups)
