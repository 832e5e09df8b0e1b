"""The gateway's request path. Recommend, in one screen:

    validate → features(user, recent items)
             → [candidates: retrieval top-N, or popular items for a cold user] ∥ [user value]
             → ranking → sort by P(interact) → top k (+ titles, tags, user value, version)

Each item also carries the ranker's P(rating >= 4) and predicted rating (its stage scores).

A stage that is down or too slow degrades the answer instead of failing it, and the response
says so in `fallbacks`: ranking → retrieval order; retrieval → popular items (filters still
applied); features → cold user; user value → omitted. The flag is "<stage>_<reason>", reason
one of unavailable, deadline_exceeded, circuit_open (the backend's breaker is open: not even
tried), and every fallback counts in recserve_fallbacks_total{stage, reason}. Feedback the
feature service cannot be reached for is held and re-sent (services.gateway.outbox). The stages
are interfaces (services.gateway.stages), so this code runs the same embedded or split.

One version per request: a pipeline serves one bundle version, and every backend call it makes
carries that version (the feature client is pinned to it, users go to retrieval and ranking
labelled with it). A backend that does not hold it refuses (WrongVersion, naming the versions
it serves); the request is then retried once, whole, on the gateway's pipeline of one of those
versions (`peers`: the current one or the previous one within the reload grace period), else
the stage falls back as above. A request reads the catalog once, at its start (CatalogHolder).
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from typing import TypeVar

import numpy as np

from services.contract.added_items import NewItem
from services.contract.bundle import DatasetFacts
from services.contract.errors import FailedPrecondition, NotFound, Unavailable
from services.contract.features import FeatureSpec, pad_history
from services.contract.types import CandidateList, Event, FilterSpec, RankScores, UserState
from services.gateway import new_items, validate
from services.gateway.catalog import CatalogHolder, GatewayCatalog
from services.gateway.config import Limits
from services.gateway.new_items import AddedItems
from services.gateway.outbox import FeedbackSpool
from services.gateway.resilience import CircuitOpen, request_budget
from services.gateway.results import (
    PredictedRating,
    RankedItems,
    RatingPrediction,
    Recommendation,
    SimilarItems,
    TagAffinities,
    UserValues,
)
from services.gateway.stages import DeadlineExceeded, Stages, ValueScore, WrongVersion
from services.platform import metrics, tracing

log = logging.getLogger(__name__)
T = TypeVar("T")

# recserve_stage_latency_seconds{stage}: each stage's child looked up once, not per call.
_STAGE_TIMERS = {
    stage: metrics.STAGE_LATENCY.labels(stage)
    for stage in ("features", "retrieval", "ranking", "uservalue")
}

_UNSET_FILTERS = FilterSpec(exclude_seen=None)  # a request without filters

# True while a request is being retried on another version (it is retried once, no more).
_RETRYING: ContextVar[bool] = ContextVar("recserve_version_retry", default=False)


class _RetryOn(Exception):
    """A backend refused the request's version; `pipeline` serves one it does serve."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline


def _one_version(budget: Callable[[Limits], float | None] = lambda limits: None):
    """A request method: run on this pipeline's version; if a backend refused it and the gateway
    holds a version that backend serves, run again, whole, on that version's pipeline (once).
    `budget`: the request's time budget (services.gateway.resilience), the retry included."""

    def wrap(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        @functools.wraps(method)
        async def run(self: Pipeline, *args, **kwargs) -> T:
            with request_budget(budget(self.limits)):
                try:
                    return await method(self, *args, **kwargs)
                except _RetryOn as retry:
                    token = _RETRYING.set(True)
                    try:
                        return await method(retry.pipeline, *args, **kwargs)
                    finally:
                        _RETRYING.reset(token)

        return run

    return wrap


class Pipeline:
    def __init__(
        self,
        stages: Stages,
        catalog: GatewayCatalog | CatalogHolder,
        spec: FeatureSpec,
        limits: Limits,
        dataset: DatasetFacts | None = None,
    ) -> None:
        self.stages = stages
        self.dataset = dataset or DatasetFacts()
        self.catalogs = catalog if isinstance(catalog, CatalogHolder) else CatalogHolder(catalog)
        self.version = self.catalogs.current.version  # every request here is pinned to it
        self.spec = spec
        self.limits = limits
        # The gateway's pipeline serving a given version, if it holds one (ModelHolder.get);
        # set by whoever holds the pipelines (the gateway servicer, the hot reload).
        self.peers: Callable[[str], Pipeline | None] | None = None
        self._warned_at: dict[str, float] = {}
        # No filters at all (most requests): the bundle's default, built once.
        self._default_filters = FilterSpec(exclude_seen=not self.dataset.repeat)
        self.spool = FeedbackSpool(
            stages.features.apply_events, limits.feedback_spool, limits.max_batch
        )

    @property
    def catalog(self) -> GatewayCatalog:
        """The catalog now (a request reads it once: `catalogs.current`)."""
        return self.catalogs.current

    def _retry_elsewhere(self, refused: WrongVersion) -> None:
        """Raise _RetryOn with a pipeline of a version the backend serves, when there is one
        and this request was not retried already; else return (the caller falls back)."""
        if _RETRYING.get() or self.peers is None:
            return
        for version in refused.served:
            other = self.peers(version) if version != self.version else None
            if other is not None and other is not self and other.version == version:
                log.debug(
                    "%s refused by a backend (%s): retried on %s", self.version, refused, version
                )
                metrics.VERSION_RETRIES.inc()
                raise _RetryOn(other)

    def _check_version(self, stage: str, label: str) -> None:
        """A backend answer labelled with another version than the request's is refused too."""
        if label and label != self.version:
            raise WrongVersion(
                f"{stage} answered in bundle {label!r}, request pinned to {self.version!r}",
                (label,),
            )

    def _pin(self, user: UserState) -> UserState:
        """The user as sent to retrieval and ranking: labelled with this pipeline's version."""
        if user.bundle_version == self.version:
            return user
        return dataclasses.replace(user, bundle_version=self.version)

    @_one_version(budget=lambda limits: limits.recommend_budget_s)
    async def recommend(
        self,
        user_id: str,
        k: int,
        filters: FilterSpec,
        recent_items: Sequence[str] = (),
        *,
        rank: bool = True,
        candidates: int | None = None,
        time_s: int = 0,
    ) -> Recommendation:
        """rank=False serves the candidates' order without calling ranking; `candidates`
        overrides how many are retrieved (experiment arms use both). User value is scored as of
        the request's `time_s` (unix seconds, 0 = now)."""
        catalog = self.catalogs.current  # the request's one catalog
        validate.check_id("user_id", user_id)
        day = validate.as_of_day("context.time", time_s)
        validate.check_k(k, self.limits.max_k)
        validate.check_filters(filters, self.limits.max_batch, catalog.tag_names)
        validate.check_ids("recent_items", recent_items, self.limits.max_batch, allow_empty=True)
        if filters.exclude_seen is None:  # unset: films are not recommended again, groceries are
            if filters == _UNSET_FILTERS:
                filters = self._default_filters
            else:
                filters = dataclasses.replace(filters, exclude_seen=not self.dataset.repeat)
        fallbacks: list[str] = []
        user = await self._get_user(user_id, recent_items, fallbacks)
        candidates_ = self._candidates(catalog, user, k, filters, fallbacks, candidates)
        if self.stages.overlap:
            found, value = await asyncio.gather(candidates_, self._user_value(user, day, fallbacks))
        else:
            found = await candidates_
            value = await self._user_value(user, day, fallbacks)
        ranks = None
        if rank:
            # Ratings only for the k items shown (ordered by P(interact), as ranking picks them);
            # a cold user's list keeps the candidates' order: every candidate rated.
            rate_top_k = 0 if user.is_cold else k
            ranks = await self._attempt(
                "ranking",
                self.stages.ranking.rank(user, found.item_indices, rate_top_k, found.query),
                fallbacks,
            )
        items = self._top_k(catalog, found, ranks, k, by_model=not user.is_cold)
        return Recommendation(items, self.version, value, user.is_cold, tuple(fallbacks))

    async def _get_user(
        self, user_id: str, recent_items: Sequence[str], fallbacks: list[str]
    ) -> UserState:
        """The user in this pipeline's version, labelled with it; cold when features fell back."""
        user = await self._attempt(
            "features", self.stages.features.get_user(user_id, recent_items), fallbacks, True
        )
        return self._pin(user or self.cold_user(user_id))

    async def _candidates(
        self,
        catalog: GatewayCatalog,
        user: UserState,
        k: int,
        filters: FilterSpec,
        fallbacks: list[str],
        candidates: int | None = None,
    ) -> CandidateList:
        """Retrieval's top-N for a known user; popular items for a cold user or when down."""
        n = max(candidates or self.limits.candidates, k)
        found = None
        if not user.is_cold:
            found = await self._attempt(
                "retrieval", self.stages.retrieval.retrieve(user, n, filters), fallbacks, True
            )
        if found is None:
            popular = catalog.popular(k if user.is_cold else n, filters, user.seen_items())
            return CandidateList(popular, catalog.popularity_scores(popular))
        items = found.item_indices
        if getattr(self.stages.retrieval, "applies_filters", False):
            # In process: the Retriever answered with distinct items, filters applied (seen
            # items by UserState.seen_items, as below). Only rows this request's catalog
            # snapshot lacks (an item added meanwhile) are dropped.
            keep = (items > 0) & (items < len(catalog.ids))
            if keep.all():
                return found
        else:
            # A remote backend: the public contract (distinct items, filters honoured) does not
            # depend on it. One vectorised pass.
            keep = _first_occurrences(items)
            keep &= catalog.allowed(items, filters, user.seen_items())
        return CandidateList(items[keep], found.scores[keep], query=found.query)

    async def _user_value(
        self, user: UserState, as_of_day: int, fallbacks: list[str]
    ) -> ValueScore | None:
        scoring = self.stages.uservalue.score([user.user_id], _activities([user]), as_of_day)
        values = await self._attempt("uservalue", scoring, fallbacks)
        return values[0] if values else None

    def _top_k(
        self,
        catalog: GatewayCatalog,
        candidates: CandidateList,
        ranks: RankScores | None,
        k: int,
        *,
        by_model: bool,
    ) -> RankedItems:
        """Sort by the ranking model's P(interact) (by_model) or keep the candidates' order.

        P(interact) orders the list: ordering by P(positive) = P(interact) x P(rating >= 4 |
        interact) loses Recall / NDCG against retrieval alone, since any interaction counts.
        Ranking rated the top k by the same stable sort of p_interact (rate_top_k); a rating
        it did not compute (NaN) reads as 0, as for a dataset without ratings. One numpy
        gather of every score column: no Python object per candidate or per item (the servicer
        writes the protobuf bytes from these arrays)."""
        score = np.asarray(
            ranks.p_interact if ranks is not None and by_model else candidates.scores
        )
        if by_model and ranks is not None and ranks.top is not None and ranks.top.size >= k:
            order = ranks.top[:k]  # ranking's own stable sort of p_interact (rate_top_k)
        else:
            order = np.argsort(-score, kind="stable")[:k]
        if ranks is None:  # no model scores: 0
            columns = np.zeros((5, order.size), dtype=np.float64)
            columns[0], columns[2] = score[order], candidates.scores[order]
        else:
            # float32 widened exactly (as float() does); a model score ranking did not compute
            # (NaN: not among rate_top_k) reads as 0.
            stacked = (score, ranks.rating, candidates.scores, ranks.p_positive, ranks.p_interact)
            columns = np.stack(stacked)[:, order].astype(np.float64)
            model = columns[_MODEL_COLUMNS]
            columns[_MODEL_COLUMNS] = np.where(np.isnan(model), 0.0, model)
        return RankedItems(
            catalog, candidates.item_indices[order], columns, currency=self.dataset.currency
        )

    @_one_version()
    async def predict_ratings(self, user_id: str, item_ids: Sequence[str]) -> RatingPrediction:
        catalog = self.catalogs.current
        if not self.dataset.has_ratings:
            raise FailedPrecondition(
                f"bundle {self.version} has no rating model: its dataset "
                f"({self.dataset.name}) has no ratings. Recommend still orders items by "
                "P(interact); train on events with a rating column to predict ratings"
            )
        validate.check_id("user_id", user_id)
        validate.check_ids("item_ids", item_ids, self.limits.max_batch)
        rows = catalog.index_of(item_ids)
        unknown = [item for item, row in zip(item_ids, rows.tolist(), strict=True) if row == 0]
        if unknown:
            raise NotFound(f"unknown item ids: {', '.join(unknown[:10])}")
        user = await self._get_user(user_id, (), [])
        # The answer itself: no fallback. An item added at runtime is rated by its own row and
        # features (a ranking backend that has not synced it yet rates it as row 0, unknown).
        ranks = await self._direct(self.stages.ranking.rank(user, rows))
        ratings = [
            PredictedRating(item, float(r), float(p), float(i))
            for item, r, p, i in zip(
                item_ids, ranks.rating, ranks.p_positive, ranks.p_interact, strict=True
            )
        ]
        return RatingPrediction(ratings, self.version, user.is_cold)

    @_one_version()
    async def similar_items(self, item_id: str, k: int, filters: FilterSpec) -> SimilarItems:
        catalog = self.catalogs.current
        validate.check_id("item_id", item_id)
        validate.check_k(k, self.limits.max_k)
        validate.check_filters(filters, self.limits.max_batch, catalog.tag_names)
        if item_id not in catalog.id_index:
            raise NotFound(f"unknown item id: {item_id}")
        # The item itself never counts as similar to itself.
        filters = FilterSpec(
            exclude_seen=False,
            include_tags=filters.include_tags,
            exclude_tags=filters.exclude_tags,
            exclude_items=(*filters.exclude_items, item_id),
        )
        found = await self._direct(self.stages.retrieval.similar(item_id, k, filters), "retrieval")
        keep = catalog.allowed(found.item_indices, filters)
        candidates = CandidateList(found.item_indices[keep], found.scores[keep])
        title = str(catalog.titles[catalog.id_index[item_id]])
        top = self._top_k(catalog, candidates, None, k, by_model=False)
        return SimilarItems(top, self.version, title)

    @_one_version()
    async def recommend_tags(self, user_id: str, k: int) -> TagAffinities:
        validate.check_id("user_id", user_id)
        validate.check_k(k, self.limits.max_k)
        user = await self._get_user(user_id, (), [])
        tags = await self._direct(self.stages.retrieval.tag_affinities(user, k))
        return TagAffinities(list(tags)[:k], self.version, user.is_cold)

    @_one_version()
    async def score_users(self, user_ids: Sequence[str], time_s: int = 0) -> UserValues:
        """Values as of `time_s` (unix seconds, 0 = now)."""
        validate.check_ids("user_ids", user_ids, self.limits.max_batch)
        day = validate.as_of_day("time", time_s)
        # Live activity from the feature store; without it the scorer uses its bundle snapshot.
        users = await self._attempt("features", self._get_users(user_ids), [])
        values = await self.stages.uservalue.score(user_ids, _activities(users or []), day)
        return UserValues(list(values), self.version)

    async def _get_users(self, user_ids: Sequence[str]) -> list[UserState]:
        users = await self.stages.features.get_users(user_ids)
        for user in users:
            self._check_version("features", user.bundle_version)
        return users

    async def feedback(self, events: Sequence[Event]) -> int:
        validate.check_events(events, self.limits.max_batch)
        return await self.spool.submit(events)

    async def add_items(self, items: Sequence[NewItem]) -> AddedItems:
        """New items, served from now on (services.gateway.new_items): the catalog is
        published anew through `catalogs`; requests in flight keep the one they read."""
        return await new_items.add_items(self.stages, self.catalogs, items, self.limits.max_batch)

    async def close(self) -> None:
        """Stop the feedback spool's re-sender, then close the stages."""
        await self.spool.close()
        await self.stages.close()

    def cold_user(self, user_id: str) -> UserState:
        """What the pipeline assumes about a user it cannot look up."""
        return UserState(
            user_id=user_id,
            known=False,
            user_index=0,
            profile=np.zeros(len(self.spec.profile_fields), dtype=np.int64),
            history=pad_history((), self.spec.history_len),
        )

    async def _direct(self, call: Awaitable[T], labelled: str = "") -> T:
        """Await a stage whose answer is the response itself (no fallback): a refused version
        is retried elsewhere when possible, else raised. `labelled`: the stage's answer carries
        the version it was computed in (checked against the request's)."""
        try:
            result = await call
            if labelled:
                self._check_version(labelled, result.bundle_version)  # type: ignore[attr-defined]
            return result
        except WrongVersion as exc:
            self._retry_elsewhere(exc)
            raise

    async def _attempt(
        self, stage: str, call: Awaitable[T], fallbacks: list[str], labelled: bool = False
    ) -> T | None:
        """Await one stage; on Unavailable / DeadlineExceeded record the fallback, return None;
        on a refused version retry the request elsewhere first (`_retry_elsewhere`).
        `labelled`: the answer's bundle_version must be the request's (else refused too).
        Timed into recserve_stage_latency_seconds, and a span of its own when tracing is on."""
        start = time.perf_counter()
        try:
            with tracing.span(f"stage.{stage}"):
                result = await call
            if labelled and result is not None:
                self._check_version(stage, result.bundle_version)  # type: ignore[attr-defined]
            return result
        except Unavailable as exc:
            if isinstance(exc, WrongVersion):
                self._retry_elsewhere(exc)
            reason = _reason(exc)
            fallbacks.append(f"{stage}_{reason}")
            metrics.FALLBACKS.labels(stage, reason).inc()
            now = time.monotonic()
            if now - self._warned_at.get(stage, -60.0) >= 10.0:  # at most one line per 10 s
                self._warned_at[stage] = now
                log.warning("stage %s %s (%s): degrading", stage, reason, exc)
            return None
        finally:
            timer = _STAGE_TIMERS.get(stage) or metrics.STAGE_LATENCY.labels(stage)
            timer.observe(time.perf_counter() - start)


# RankedItems.columns rows that hold the ranking model's scores: rating, ranking, interaction.
_MODEL_COLUMNS = [1, 3, 4]


def _reason(exc: Unavailable) -> str:
    if isinstance(exc, DeadlineExceeded):
        return "deadline_exceeded"
    return "circuit_open" if isinstance(exc, CircuitOpen) else "unavailable"


def _first_occurrences(items: np.ndarray) -> np.ndarray:
    """bool[N]: True at the first occurrence of each value (np.unique's return_index, without
    its general-purpose wrapping: one stable argsort)."""
    keep = np.ones(items.size, dtype=bool)
    if items.size > 1:
        order = np.argsort(items, kind="stable")
        ranked = items[order]
        keep[order[1:][ranked[1:] == ranked[:-1]]] = False
    return keep


def _activities(users: Sequence[UserState]) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    live = {u.user_id: (u.activity_days, u.activity_values) for u in users if u.activity_days.size}
    return live or None
