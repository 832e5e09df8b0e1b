"""Domain types passed between pipeline stages (no grpc, no protobuf).

Conversion to and from the recserve.v1 messages lives in services/platform/convert.py.
Arrays: P = profile fields, H = history length, N = candidates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np

_EMPTY_I64 = np.zeros(0, dtype=np.int64)
_EMPTY_F32 = np.zeros(0, dtype=np.float32)


class EventKind(StrEnum):
    VIEW = "view"
    CLICK = "click"
    RATING = "rating"
    PURCHASE = "purchase"


@dataclass(frozen=True, slots=True)
class Event:
    user_id: str
    item_id: str
    kind: EventKind
    timestamp: int  # unix seconds
    rating: float = 0.0  # 1..5 for RATING
    value: float = 0.0  # money for PURCHASE


@dataclass(frozen=True, slots=True)
class UserState:
    """Online features of one user at request time (see common.proto UserFeatures)."""

    user_id: str
    known: bool
    user_index: int
    profile: np.ndarray  # int64[P]
    history: np.ndarray  # int64[H], most recent first, 0-padded
    seen: np.ndarray = field(default_factory=lambda: _EMPTY_I64)  # int64[S] ascending
    activity_days: np.ndarray = field(default_factory=lambda: _EMPTY_I64)  # int64[A]
    activity_values: np.ndarray = field(default_factory=lambda: _EMPTY_F32)  # float32[A]
    event_count: int = 0
    bundle_version: str = ""  # whose item vocabulary history/seen index ("" = the caller's)
    # The events behind `history`, entry by entry (services.contract.features: HISTORY_EVENT_
    # INPUTS): unix seconds (0 = unknown) and event tokens (event_tokens; 0 = unknown). Empty:
    # none recorded (every entry unknown).
    history_times: np.ndarray = field(default_factory=lambda: _EMPTY_I64)  # int64[H]
    history_kinds: np.ndarray = field(default_factory=lambda: _EMPTY_I64)  # int64[H]
    # When the request is made (unix s) for the history's ages; 0: the clock when the model's
    # inputs are built. Offline evaluation sets it to the moment it recommends for.
    request_time: float = 0.0

    @property
    def has_history(self) -> bool:
        return bool(self.history.size and self.history[0] > 0)

    @property
    def is_cold(self) -> bool:
        """Nothing to personalise from: unknown user and no history."""
        return not self.known and not self.has_history

    def seen_items(self) -> np.ndarray:
        """What exclude_seen drops, sorted int64 (a row may appear twice): everything seen plus
        the history (a request's recent items included). Retrieval and the gateway's check of
        its answer both use this one definition."""
        seen = np.concatenate((self.seen, self.history[self.history > 0]))
        seen.sort()
        return seen


@dataclass(frozen=True, slots=True)
class ItemInfo:
    item_id: str
    item_index: int
    title: str
    tags: tuple[str, ...]
    year: int
    popularity: int


@dataclass(frozen=True, slots=True)
class FilterSpec:
    # None: the bundle's dataset decides (docs/data.md, behaviour.repeat): films are not
    # recommended again, groceries are ("buy again").
    exclude_seen: bool | None = False
    include_tags: tuple[str, ...] = ()
    exclude_tags: tuple[str, ...] = ()
    exclude_items: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class CandidateList:
    """Best first."""

    item_indices: np.ndarray  # int64[N]
    scores: np.ndarray  # float32[N]
    bundle_version: str = ""  # whose item vocabulary the indices are rows of ("" = the caller's)
    # The user embedding float32[D] the scores are inner products with (retrieval's user tower
    # output), handed on to ranking (RankingStage.rank's query); None: not known here.
    query: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.item_indices.size)


@dataclass(frozen=True, slots=True)
class RankScores:
    """Aligned with the ranked item indices. p_interact orders a recommendation list;
    p_positive and rating describe each item."""

    p_positive: np.ndarray  # float32[N]: P(rating >= 4)
    rating: np.ndarray  # float32[N]: predicted rating in [1, 5]
    p_interact: np.ndarray  # float32[N]: P(the user interacts with the item)
    # Positions of the rate_top_k candidates ranking rated, best p_interact first (a stable
    # sort: ties keep the earlier candidate); None when every candidate was rated. The gateway
    # reuses it as the top of its own order instead of sorting again.
    top: np.ndarray | None = None


@dataclass(frozen=True, slots=True)
class ValueScore:
    """A user's value over `horizon_weeks`; segment is a common.proto Segment name without the
    prefix ("NEW", "HIGH_VALUE", "ACTIVE", "AT_RISK", "DORMANT")."""

    user_id: str
    p_active: float
    expected_transactions: float
    expected_value: float
    segment: str
    horizon_weeks: float
    unit: str = ""  # expected_value's unit: a currency code, or "interactions" (engagement)
