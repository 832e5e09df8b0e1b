"""The four model-serving stages the gateway pipeline calls, as interfaces.

Each stage has two implementations with the same async methods and domain types:
  - `inprocess`: wraps the domain class (embedded mode: one process, no network hop);
  - `remote`: a gRPC client of the stage's service (split mode: five processes).
A stage that cannot answer raises `Unavailable` (or its subclass `DeadlineExceeded`); the
pipeline turns that into a flagged fallback. Bad input raises `InvalidArgument` / `NotFound`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from services.common.added_items import AddedItem, NewItem
from services.common.errors import DeadlineExceeded
from services.common.types import (
    CandidateList,
    Event,
    FilterSpec,
    RankScores,
    UserState,
    ValueScore,
)

# (distinct active days int64[A], value per day float32[A]) of one user.
Activity = tuple[np.ndarray, np.ndarray]


class FeatureStage(Protocol):
    async def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState: ...

    async def get_users(self, user_ids: Sequence[str]) -> list[UserState]: ...

    async def apply_events(self, events: Sequence[Event]) -> int: ...

    async def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]: ...


class RetrievalStage(Protocol):
    async def retrieve(self, user: UserState, k: int, filters: FilterSpec) -> CandidateList: ...

    async def similar(self, item_id: str, k: int, filters: FilterSpec) -> CandidateList: ...

    async def tag_affinities(self, user: UserState, k: int) -> list[tuple[str, float]]: ...

    async def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]: ...


class RankingStage(Protocol):
    async def rank(self, user: UserState, item_indices: np.ndarray) -> RankScores: ...


class UserValueStage(Protocol):
    async def score(
        self,
        user_ids: Sequence[str],
        activities: Mapping[str, Activity] | None = None,
        as_of_day: int = 0,
    ) -> list[ValueScore]:
        """Scores as of `as_of_day` (days since 1970-01-01; 0 = today by the scorer's clock)."""
        ...


class Closeable(Protocol):
    async def close(self) -> None: ...


@dataclass(frozen=True)
class Stages:
    features: FeatureStage
    retrieval: RetrievalStage
    ranking: RankingStage
    uservalue: UserValueStage

    async def close(self) -> None:
        for stage in (self.features, self.retrieval, self.ranking, self.uservalue):
            close = getattr(stage, "close", None)
            if close is not None:
                await close()


__all__ = [
    "Activity",
    "DeadlineExceeded",
    "FeatureStage",
    "RankingStage",
    "RetrievalStage",
    "Stages",
    "UserValueStage",
    "ValueScore",
]
