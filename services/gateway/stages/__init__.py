"""The four model-serving stages the gateway pipeline calls, as interfaces.

Each stage has two implementations with the same async methods and domain types:
  - `inprocess`: wraps the domain class (embedded mode: one process, no network hop);
  - `remote`: a gRPC client of the stage's service (split mode: five processes).
A stage that cannot answer raises `Unavailable` (or its subclass `DeadlineExceeded`); the
pipeline turns that into a flagged fallback. Bad input raises `InvalidArgument` / `NotFound`.
A backend that does not hold the bundle version a request is pinned to raises `WrongVersion`
(an `Unavailable` naming the versions it serves): the pipeline retries the request once on one
of those it holds, else falls back (docs/bundle.md, "One version per request").

The mode is an object too: `EmbeddedStages` (inprocess) and `SplitStages` (remote) own their
life cycle: the stages for a new bundle, what the new ones take over from the old at a hot
reload, warm-up, and the item sync's source and targets. Plain `Stages` (a test's injected
stages) do nothing for any of these.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar, Protocol

import numpy as np

from services.contract.added_items import AddedItem, NewItem
from services.contract.bundle import Bundle
from services.contract.errors import DeadlineExceeded, WrongVersion
from services.contract.types import (
    CandidateList,
    Event,
    FilterSpec,
    RankScores,
    UserState,
    ValueScore,
)
from services.platform.item_sync import ListFn

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
    async def rank(
        self,
        user: UserState,
        item_indices: np.ndarray,
        rate_top_k: int = 0,
        query: np.ndarray | None = None,
    ) -> RankScores:
        """rate_top_k > 0: p_positive / rating only for the rate_top_k candidates with the
        highest p_interact (NaN for the others; a single-graph bundle rates all); 0: all.
        query: the user's embedding float32[D] that retrieval scored these candidates with
        (CandidateList.query), for a ranker.onnx that takes it (else it runs the user tower
        itself); None: none at hand."""
        ...


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
    # Retrieval and user value run at once (gather): each awaits its own backend. Stages that
    # compute on the event loop itself (embedded) set it False: one after the other, since
    # running them as two tasks overlaps nothing and costs the tasks.
    overlap: ClassVar[bool] = True

    async def close(self) -> None:
        for stage in (self.features, self.retrieval, self.ranking, self.uservalue):
            close = getattr(stage, "close", None)
            if close is not None:
                await close()

    # --- the mode's life cycle (EmbeddedStages, SplitStages); none for plain Stages ----------

    def for_bundle(self, bundle: Bundle) -> Stages:
        """The stages that serve `bundle` after a hot reload (built off the event loop)."""
        return self

    def adopt(self, old: Stages) -> None:
        """At the swap (on the event loop): take over what `old` holds live."""

    def warm_up_users(self) -> list[str]:
        """Users to serve once before the stages take traffic; [] = no warm-up."""
        return []

    def registry_list_fn(self) -> ListFn | None:
        """Where the item sync reads the registry of added items; None = no sync."""
        return None

    async def apply_registry(self, entries: Sequence[AddedItem]) -> None:
        """The item sync's entries, applied to the stages that hold an item index themselves."""

    def index_pending(self, entries: Sequence[AddedItem]) -> None:
        """Blocking form of apply_registry, for stages not serving yet (a reload's build)."""


__all__ = [
    "Activity",
    "DeadlineExceeded",
    "FeatureStage",
    "ListFn",
    "RankingStage",
    "RetrievalStage",
    "Stages",
    "UserValueStage",
    "ValueScore",
    "WrongVersion",
]
