"""Embedded mode: every stage is the domain object itself, called in the gateway's process.

The domain calls are short, CPU-bound numpy / ONNX Runtime / FAISS work (well under a
millisecond to a few ms), so they run inline on the event loop: a thread hop would cost more
than it saves on a 2-core machine, and one process per core is the way to scale out.
"""

from __future__ import annotations

import asyncio
import atexit
import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from services.contract.added_items import AddedItem, NewItem
from services.contract.bundle import Bundle
from services.contract.types import CandidateList, Event, FilterSpec, RankScores, UserState
from services.gateway.stages import Activity, Stages, ValueScore
from services.platform.item_sync import ListFn, store_list_fn
from services.platform.loop_batching import LoopBatching
from services.ranking.batcher import RankBatching

if TYPE_CHECKING:
    from services.feature.config import DurabilitySettings


class InProcessFeatures:
    """Users come back labelled with the store's bundle version (as the feature service labels
    them); each embedded pipeline has the store of its own bundle (EmbeddedStages)."""

    def __init__(self, store) -> None:
        self._store = store

    @property
    def store(self):
        """The feature store (a hot reload hands its live state to the next bundle's store)."""
        return self._store

    async def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState:
        state = self._store.get_user(user_id, recent_items=tuple(recent_items))
        return _labelled(state, self._store.bundle_version)

    async def get_users(self, user_ids: Sequence[str]) -> list[UserState]:
        version = self._store.bundle_version
        return [_labelled(s, version) for s in self._store.get_users(list(user_ids))]

    async def apply_events(self, events: Sequence[Event]) -> int:
        # Validation errors raise here; the await ends once the batch is durable and applied.
        return int(await asyncio.wrap_future(self._store.submit_events(events)))

    async def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]:
        return list(await asyncio.wrap_future(self._store.submit_items(items)))


class InProcessRetrieval:
    """`ranking`: the in-process ranker's stage, handed every item this retriever indexes (its
    vector as computed here), so both score an added item by the same features.
    `applies_filters`: the Retriever's answer holds distinct items with the request's filters
    applied (UserState.seen_items for exclude_seen), so the pipeline does not check it again.
    Concurrent requests share user-tower calls (Retriever.retrieve_batched, the retriever's
    own cap); `batched=False`: each request's tower call alone."""

    applies_filters = True

    def __init__(
        self, retriever, ranking: InProcessRanking | None = None, batched: bool = True
    ) -> None:
        self._retriever = retriever
        self.ranking = ranking
        self.batched = batched

    @property
    def towers(self) -> LoopBatching:
        """The retriever's shared user-tower calls (calls and requests counted)."""
        return self._retriever.towers

    @property
    def retriever(self):
        """The Retriever (the item sync indexes registry entries into it)."""
        return self._retriever

    async def retrieve(self, user: UserState, k: int, filters: FilterSpec) -> CandidateList:
        if self.batched:
            return await self._retriever.retrieve_batched(user, k, filters)
        return self._retriever.retrieve(user, k, filters)

    async def similar(self, item_id: str, k: int, filters: FilterSpec) -> CandidateList:
        return self._retriever.similar(item_id, k, filters)

    async def tag_affinities(self, user: UserState, k: int) -> list[tuple[str, float]]:
        return list(self._retriever.tag_affinities(user, k))

    async def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]:
        """Encode off the event loop (ONNX), index on it, where searches run."""
        vectors = await asyncio.to_thread(self._retriever.prepare_items, items)
        added = self._retriever.add_prepared(items, vectors)
        self.share_added()
        return [AddedItem(0, a.row, dataclasses.replace(a.item, embedding=None)) for a in added]

    def share_added(self) -> None:
        """The ranker takes the added items it does not hold yet, with retrieval's vectors."""
        if self.ranking is not None and self.ranking.items is not None:
            self.ranking.items.apply_added(self._retriever.added.by_id.values())


class InProcessRanking:
    """`items`: the ranker's items added at runtime (services.ranking.added), fed by the
    in-process retriever (InProcessRetrieval.share_added); rows it lacks score as row 0.
    Concurrent requests share ranker calls, up to `max_batch` per call
    (services.ranking.batcher; 1 = each request alone)."""

    def __init__(self, ranker, items=None, max_batch: int = 16) -> None:
        self._batching = RankBatching(ranker, max_batch=max_batch)
        self.items = items

    @property
    def batching(self) -> RankBatching:
        return self._batching

    @property
    def ranker(self):
        """The OnnxRanker (services.ranking.ranker)."""
        return self._batching.ranker

    async def rank(
        self,
        user: UserState,
        item_indices: np.ndarray,
        rate_top_k: int = 0,
        query: np.ndarray | None = None,
    ) -> RankScores:
        return await self._batching.rank(user, item_indices, rate_top_k, query)


class InProcessUserValue:
    def __init__(self, scorer) -> None:
        self._scorer = scorer

    async def score(
        self,
        user_ids: Sequence[str],
        activities: Mapping[str, Activity] | None = None,
        as_of_day: int = 0,
    ) -> list[ValueScore]:
        return list(self._scorer.score(list(user_ids), activities, as_of_day=as_of_day))


@dataclass(frozen=True)
class EmbeddedStages(Stages):
    """Embedded mode: every stage in process, all of one bundle. A hot reload builds a whole new
    set for the new bundle (a new feature store included); at the swap the new store takes over
    the old one's live state, re-encoded by item id, with its event log (InMemoryFeatureStore.
    adopt_live_state), so each pipeline reads users in its own version and no acknowledged
    event is lost."""

    prefer_gpu: bool = True
    overlap: ClassVar[bool] = False  # every stage computes on the event loop

    def for_bundle(self, bundle: Bundle) -> EmbeddedStages:
        from services.feature.store import InMemoryFeatureStore

        store = InMemoryFeatureStore.from_bundle(bundle)  # the log comes at the swap (adopt)
        return build_in_process(
            bundle, prefer_gpu=self.prefer_gpu, features=InProcessFeatures(store)
        )

    def adopt(self, old: Stages) -> None:
        new, previous = self.features, old.features
        if (
            isinstance(new, InProcessFeatures)
            and isinstance(previous, InProcessFeatures)
            and new.store is not previous.store
        ):
            new.store.adopt_live_state(_latest(previous.store))

    def warm_up_users(self) -> list[str]:
        users = ["warm-up"]
        store = getattr(self.features, "store", None)
        if store is not None and len(store.users) > 1:
            users.append(store.users.id_of(1))
        return users

    def registry_list_fn(self) -> ListFn | None:
        if not isinstance(self.features, InProcessFeatures):
            return None
        held = [self.features.store]  # moved on at each reload: old stores are not kept alive

        def current():
            held[0] = _latest(held[0])
            return held[0]

        return store_list_fn(current)

    async def apply_registry(self, entries: Sequence[AddedItem]) -> None:
        if isinstance(self.retrieval, InProcessRetrieval):
            from services.retrieval.sync import apply_registry  # embedded only: FAISS, ONNX

            await apply_registry(self.retrieval.retriever, entries)
            self.retrieval.share_added()

    def index_pending(self, entries: Sequence[AddedItem]) -> None:
        if isinstance(self.retrieval, InProcessRetrieval):
            from services.retrieval.sync import index_pending

            index_pending(self.retrieval.retriever, entries)
            self.retrieval.share_added()


def _latest(store):
    """The store holding the live state (a store handed over at a reload names its successor)."""
    latest = getattr(store, "latest", None)
    return latest() if latest is not None else store


def build_in_process(
    bundle: Bundle,
    *,
    prefer_gpu: bool = True,
    durability: DurabilitySettings | None = None,
    features: InProcessFeatures | None = None,
) -> EmbeddedStages:
    """Load every domain object from one verified bundle (embedded mode). The ranker holds the
    items added at runtime that the retriever indexes (InProcessRetrieval.share_added).

    The feature store is durable as in the feature service: snapshot + event log replay at
    start, feedback acknowledged once logged. `durability` defaults to the RECSERVE_FEATURE_*
    log settings from the environment (services.feature.config.DurabilitySettings); the log is
    drained and snapshotted at interpreter exit. `features` replaces the store (a hot reload's
    store of the new bundle, EmbeddedStages.for_bundle)."""
    # Imported here so split mode never loads FAISS or the ONNX models into the gateway.
    from services.feature.config import DurabilitySettings
    from services.feature.snapshot import open_durable_store
    from services.ranking.added import RankerItems
    from services.ranking.config import max_batch_from_env
    from services.ranking.ranker import OnnxRanker
    from services.retrieval.retriever import Retriever
    from services.uservalue.scorer import UserValueScorer

    if features is None:
        settings = durability if durability is not None else DurabilitySettings.from_env()
        store, durable = open_durable_store(bundle, settings)
        if durable is not None:
            atexit.register(durable.close)
        features = InProcessFeatures(store)
    max_batch = max_batch_from_env()
    retriever = Retriever.from_bundle(bundle, max_batch=max_batch)
    ranker = OnnxRanker.from_bundle(bundle, prefer_gpu=prefer_gpu)
    base = retriever.added.base  # the bundle's catalog: its rows and ids
    items = RankerItems(ranker, base.n_base_rows, base.vocab.__contains__)
    ranking = InProcessRanking(ranker, items, max_batch)
    return EmbeddedStages(
        features=features,
        retrieval=InProcessRetrieval(retriever, ranking),
        ranking=ranking,
        uservalue=InProcessUserValue(UserValueScorer.from_bundle(bundle)),
        prefer_gpu=prefer_gpu,
    )


def _labelled(state: UserState, version: str) -> UserState:
    """The state labelled with the store's bundle version (a copy only when it is not already:
    dataclasses.replace of a UserState costs microseconds per request)."""
    if state.bundle_version == version:
        return state
    return dataclasses.replace(state, bundle_version=version)
