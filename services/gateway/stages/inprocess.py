"""Embedded mode: every stage is the domain object itself, called in the gateway's process.

The domain calls are short, CPU-bound numpy / ONNX Runtime / FAISS work (well under a
millisecond to a few ms), so they run inline on the event loop: a thread hop would cost more
than it saves on a 2-core machine, and one process per core is the way to scale out.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from services.common.bundle import Bundle
from services.common.types import CandidateList, Event, FilterSpec, RankScores, UserState
from services.gateway.stages import Activity, Stages, ValueScore


class InProcessFeatures:
    def __init__(self, store) -> None:
        self._store = store

    @property
    def store(self):
        """The feature store (a hot reload hands its live state to the next bundle's store)."""
        return self._store

    async def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState:
        return self._store.get_user(user_id, recent_items=tuple(recent_items))

    async def get_users(self, user_ids: Sequence[str]) -> list[UserState]:
        return self._store.get_users(list(user_ids))

    async def apply_events(self, events: Sequence[Event]) -> int:
        return int(self._store.apply_events(events))


class InProcessRetrieval:
    def __init__(self, retriever) -> None:
        self._retriever = retriever

    async def retrieve(self, user: UserState, k: int, filters: FilterSpec) -> CandidateList:
        return self._retriever.retrieve(user, k, filters)

    async def similar(self, item_id: str, k: int, filters: FilterSpec) -> CandidateList:
        return self._retriever.similar(item_id, k, filters)

    async def tag_affinities(self, user: UserState, k: int) -> list[tuple[str, float]]:
        return list(self._retriever.tag_affinities(user, k))


class InProcessRanking:
    def __init__(self, ranker) -> None:
        self._ranker = ranker

    async def rank(self, user: UserState, item_indices: np.ndarray) -> RankScores:
        return self._ranker.rank(user, item_indices)


class InProcessUserValue:
    def __init__(self, scorer) -> None:
        self._scorer = scorer

    async def score(
        self, user_ids: Sequence[str], activities: Mapping[str, Activity] | None = None
    ) -> list[ValueScore]:
        return list(self._scorer.score(list(user_ids), activities))


def build_in_process(bundle: Bundle, *, prefer_gpu: bool = True) -> Stages:
    """Load every domain object from one verified bundle (embedded mode)."""
    # Imported here so split mode never loads FAISS or the ONNX models into the gateway.
    from services.feature.store import InMemoryFeatureStore
    from services.ranking.ranker import OnnxRanker
    from services.retrieval.retriever import Retriever
    from services.uservalue.scorer import UserValueScorer

    return Stages(
        features=InProcessFeatures(InMemoryFeatureStore.from_bundle(bundle)),
        retrieval=InProcessRetrieval(Retriever.from_bundle(bundle)),
        ranking=InProcessRanking(OnnxRanker.from_bundle(bundle, prefer_gpu=prefer_gpu)),
        uservalue=InProcessUserValue(UserValueScorer.from_bundle(bundle)),
    )
