"""Canned gateway stages: the four stage Protocols of services.gateway.stages answering at once
with answers built once (no model, no lookup), for the no-op gateway floor (bench.floors).

This module is the only bench code that implements the stage Protocols or calls the Pipeline
constructor: a change of their signatures is fixed here and nowhere else.

    pipeline = canned_pipeline(Bundle.load(bundle_dir, verify=False), n_candidates=200)
    server, port = await create_server(register(pipeline), ...)  # the real servicer
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from services.contract.added_items import AddedItem, NewItem
from services.contract.bundle import Bundle
from services.contract.features import FeatureSpec
from services.contract.types import (
    CandidateList,
    Event,
    FilterSpec,
    RankScores,
    UserState,
    ValueScore,
)
from services.gateway.catalog import GatewayCatalog
from services.gateway.config import GatewaySettings
from services.gateway.pipeline import Pipeline
from services.gateway.stages import Activity, Stages


def canned_user(spec: FeatureSpec, n_rows: int, n_candidates: int) -> UserState:
    """A known user with a full history of items that are not among the canned candidates (so
    exclude_seen keeps all of them) and a few active days."""
    first = min(n_candidates + 1, max(n_rows - 1, 1))
    history = np.arange(first, first + spec.history_len, dtype=np.int64)
    history = np.where(history < n_rows, history, 0)
    seen = np.unique(history[history > 0])
    days = np.arange(20_000, 20_030, 3, dtype=np.int64)
    return UserState(
        user_id="canned",
        known=True,
        user_index=1,
        profile=np.zeros(len(spec.profile_fields), dtype=np.int64),
        history=history,
        seen=seen,
        activity_days=days,
        activity_values=np.ones(days.size, dtype=np.float32),
        event_count=int(seen.size),
    )


class CannedFeatures:
    def __init__(self, user: UserState) -> None:
        self.user = user

    async def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState:
        return self.user

    async def get_users(self, user_ids: Sequence[str]) -> list[UserState]:
        return [self.user for _ in user_ids]

    async def apply_events(self, events: Sequence[Event]) -> int:
        return len(events)

    async def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]:
        return []


class CannedRetrieval:
    def __init__(self, candidates: CandidateList) -> None:
        self.candidates = candidates

    async def retrieve(self, user: UserState, k: int, filters: FilterSpec) -> CandidateList:
        return self.candidates

    async def similar(self, item_id: str, k: int, filters: FilterSpec) -> CandidateList:
        return self.candidates

    async def tag_affinities(self, user: UserState, k: int) -> list[tuple[str, float]]:
        return []

    async def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]:
        return []


class CannedRanking:
    def __init__(self, n: int) -> None:
        p = np.linspace(0.9, 0.1, n, dtype=np.float32)
        self.scores = RankScores(p_positive=p, rating=p * 4 + 1, p_interact=p)

    async def rank(
        self,
        user: UserState,
        item_indices: np.ndarray,
        rate_top_k: int = 0,
        query: np.ndarray | None = None,
    ) -> RankScores:
        """rate_top_k: ignored (canned scores for every candidate)."""
        n = len(item_indices)
        s = self.scores
        if n == len(s.p_interact):
            return s
        return RankScores(s.p_positive[:n], s.rating[:n], s.p_interact[:n])  # views, no copy


class CannedUserValue:
    def __init__(self, value: ValueScore) -> None:
        self.value = value

    async def score(
        self,
        user_ids: Sequence[str],
        activities: Mapping[str, Activity] | None = None,
        as_of_day: int = 0,
    ) -> list[ValueScore]:
        return [self.value for _ in user_ids]


def canned_stages(spec: FeatureSpec, n_rows: int, n_candidates: int = 200) -> Stages:
    """Stages over an item table of `n_rows` rows (row 0 = unknown): N candidates 1..N."""
    n = max(1, min(n_candidates, n_rows - 1))
    rows = np.arange(1, n + 1, dtype=np.int64)
    candidates = CandidateList(rows, np.linspace(1.0, 0.0, n, dtype=np.float32))
    value = ValueScore("canned", 0.5, 1.2, 30.0, "ACTIVE", 39.0)
    return Stages(
        features=CannedFeatures(canned_user(spec, n_rows, n)),
        retrieval=CannedRetrieval(candidates),
        ranking=CannedRanking(n),
        uservalue=CannedUserValue(value),
    )


def canned_pipeline(bundle: Bundle, n_candidates: int = 200) -> Pipeline:
    """The real gateway Pipeline (validation, filters, top k, titles) over canned stages, with
    the bundle's catalog and the embedded gateway's default limits."""
    settings = GatewaySettings.from_env({"RECSERVE_MODE": "embedded"})
    limits = replace(settings.limits, candidates=n_candidates)
    catalog = GatewayCatalog.from_bundle(bundle)
    stages = canned_stages(bundle.feature_spec, len(catalog.ids), n_candidates)
    return Pipeline(stages, catalog, bundle.feature_spec, limits, bundle.dataset)
