"""Online user state: profile, recent history, seen items and daily activity per user.

`FeatureStore` is the seam between the in-memory store here (one replica) and the shared store
in services.feature.redis_store (several replicas). Both start from the same bundle state
(services.feature.bundle_state: initial state from the bundle's interactions.parquet, exactly as
training encodes it) and fold live events in with the same code, so they answer identically.
Live events update it immediately; the next get_user sees them.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from services.common.catalog import ItemCatalog
from services.common.features import FeatureSpec
from services.common.types import Event, ItemInfo, UserState
from services.common.vocab import Vocabulary
from services.feature.bundle_state import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_IDS,
    BundleFeatures,
    UserRecord,
    activity_value,
    event_day,
)

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
        """Validates the whole batch first (all or nothing), then applies in order.
        Events for unknown items still count as activity but stay out of history and seen."""
        items = self._check_batch(events)
        by_user: dict[str, list[int]] = {}
        for i, event in enumerate(events):
            by_user.setdefault(event.user_id, []).append(i)
        history_len = self.spec.history_len
        with self._lock:
            for user_id, rows in by_user.items():  # users are independent; order kept per user
                rec = self._records.get(user_id)
                if rec is None:
                    rec = self._records[user_id] = UserRecord.empty(history_len)
                rec.apply_many(
                    [items[i] for i in rows],
                    [event_day(events[i]) for i in rows],
                    [activity_value(events[i]) for i in rows],
                )
            self.events_applied += len(events)
            self.unknown_item_events += items.count(0)
        return len(events)
