"""Retriever: user tower (ONNX, CPU) -> embedding -> filtered FAISS search; item-to-item
similarity; tag affinities. Domain code: no grpc."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import faiss
import numpy as np

from services.contract.added_items import NewItem
from services.contract.bundle import Bundle
from services.contract.catalog import ItemCatalog, unavailable_rows
from services.contract.content import ContentEncoder
from services.contract.errors import InvalidArgument, NotFound
from services.contract.item_table import ItemTable, event_inputs, feature_inputs
from services.contract.model_inputs import UserInputs
from services.contract.onnx import create_session
from services.contract.types import CandidateList, FilterSpec, UserState
from services.platform import metrics
from services.platform.loop_batching import LoopBatching
from services.retrieval.added import Added, AddedItems, carry_over
from services.retrieval.index import CandidateIndex

log = logging.getLogger(__name__)

DEFAULT_MAX_K = 1_000
NO_FILTERS = FilterSpec()
DEFAULT_TAG_TEMPERATURE = 0.1


_FROM_BUNDLE = object()  # from_bundle's default: the bundle's own content encoder (or none)
TAG_HISTORY_DECAY = 0.95
TAG_NEXT_ITEMS = 100


DEFAULT_TOWER_BATCH = 16


def _observe_towers(size: int, waits: list[float]) -> None:
    metrics.USER_TOWER_BATCH_SIZE.observe(size)


class Retriever:
    def __init__(
        self,
        session,
        index: CandidateIndex,
        catalog: ItemCatalog,
        inputs: UserInputs,
        tag_centroids: np.ndarray,
        *,
        bundle_version: str,
        provider: str,
        max_k: int = DEFAULT_MAX_K,
        tag_temperature: float = DEFAULT_TAG_TEMPERATURE,
        encoder=None,
        buy_again: bool = False,
        table: ItemTable | None = None,
        max_batch: int = DEFAULT_TOWER_BATCH,
    ) -> None:
        """encoder: the bundle's ContentEncoder (or any object with .encode(texts) -> float32
        [N, D]); None = new items need explicit embeddings. buy_again (the bundle's dataset
        says repeat = true): a search that may return seen items also returns the user's
        earlier items (see retrieve). table: the bundle's item table, required when the user
        tower takes the history's item features as inputs (bundle schema_version 2); it grows
        with the items added at runtime, so the tower reads an added item in a history by its
        own tags and row. A schema_version 1 tower (features as constants) reads it as row 0.
        A tower that reads the history's events (history_age, history_kind) gets them from the
        user's state (UserInputs.feeds), table or not. max_batch: requests whose user embeddings
        one tower call may compute (retrieve_batched; 1 = each alone)."""
        self._session = session
        table_features = feature_inputs(session)
        if table_features and table is None:
            raise ValueError(
                f"user_tower.onnx takes {list(table_features)}: an item table is needed"
            )
        self.table = table if table_features else None
        self.features = table_features + event_inputs(session)  # what UserInputs.feeds adds
        self.index = index
        self.catalog = catalog
        self.inputs = inputs
        self.tag_centroids = np.asarray(tag_centroids, dtype=np.float32)  # float32[T, D]
        self.bundle_version = bundle_version
        self.provider = provider
        self.max_k = max_k
        self.tag_temperature = tag_temperature
        self.buy_again = buy_again
        # Cold users: each tag's share of training interactions.
        tag_pop = index.tag_masks.astype(np.float64) @ catalog.popularity.astype(np.float64)
        total = tag_pop.sum()
        n_tags = len(index.tags)
        # A catalog without tags (e.g. groceries without metadata) has an empty distribution.
        uniform = np.full(n_tags, 1.0 / max(n_tags, 1))
        self._tag_popularity = tag_pop / total if total > 0 else uniform
        self.added = AddedItems(catalog, encoder, index.embeddings.shape[1])
        # Concurrent requests' user-tower calls, shared (retrieve_batched; `max_batch` per call).
        self.towers: LoopBatching[dict[str, np.ndarray], np.ndarray] = LoopBatching(
            lambda feeds: self.embed([feeds])[0],
            self.embed,
            max_batch=max_batch,
            observe=_observe_towers,
        )

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        intra_op_threads: int = 1,
        *,
        max_k: int = DEFAULT_MAX_K,
        tag_temperature: float = DEFAULT_TAG_TEMPERATURE,
        exact_below: int = 0,
        faiss_threads: int = 1,
        encoder: object = _FROM_BUNDLE,
        max_batch: int = DEFAULT_TOWER_BATCH,
    ) -> Retriever:
        """faiss_threads sets FAISS's OpenMP pool for the whole process: one query per call on a
        busy box is fastest single-threaded (OpenMP spin-waits otherwise cost milliseconds)."""
        faiss.omp_set_num_threads(faiss_threads)
        catalog = ItemCatalog.from_bundle(bundle)
        embeddings = np.load(bundle.path("item_embeddings.npy"), allow_pickle=False)
        tags = np.load(bundle.path("tags.npy"), allow_pickle=False).tolist()
        item_tags = [catalog.by_index(row).tags for row in range(len(catalog))]
        index = CandidateIndex.load(
            bundle.path("items.faiss"), embeddings, tags, item_tags, exact_below=exact_below
        )
        unavailable = unavailable_rows(bundle)
        if unavailable.size:
            index.set_available(unavailable, False)
        session, provider = create_session(
            bundle.path("user_tower.onnx"), prefer_gpu=False, intra_op_threads=intra_op_threads
        )
        table = ItemTable.from_bundle(bundle, embeddings) if feature_inputs(session) else None
        return cls(
            session,
            index,
            catalog,
            UserInputs.from_bundle(bundle, n_item_rows=embeddings.shape[0]),
            np.load(bundle.path("tag_centroids.npy"), allow_pickle=False),
            bundle_version=bundle.version,
            provider=provider,
            max_k=max_k,
            tag_temperature=tag_temperature,
            encoder=ContentEncoder.from_bundle(bundle) if encoder is _FROM_BUNDLE else encoder,
            buy_again=bundle.dataset.repeat,
            table=table,
            max_batch=max_batch,
        )

    def _check_k(self, k: int) -> None:
        if not 0 < k <= self.max_k:
            raise InvalidArgument(f"k={k} must be in 1..{self.max_k}")

    def tower_feeds(self, user: UserState) -> dict[str, np.ndarray]:
        """The user tower's inputs (InvalidArgument for out-of-range indices). Items added at
        runtime in the history are read by their own rows and features from the item table;
        a schema_version 1 tower (trained rows only) reads them as row 0, the unknown item, and
        so does any tower for a row this replica has not synced yet (past its item table)."""
        table = self.table
        n_rows = table.n_rows if table is not None else None
        history = self.added.tower_history(user.history, n_rows)
        if history is not user.history:  # entry by entry: the events stay aligned
            user = dataclasses.replace(user, history=history)
        return self.inputs.feeds(user, table, self.features)

    def user_embedding(self, user: UserState) -> np.ndarray:
        """-> float32[D], L2-normalised by the tower."""
        return self.embed([self.tower_feeds(user)])[0]

    def embed(self, feeds: list[dict[str, np.ndarray]]) -> np.ndarray:
        """B users' tower_feeds -> float32[B, D] in one ONNX Runtime call (their inputs stacked
        along the batch axis): what concurrent requests share in an embedded gateway."""
        if len(feeds) == 1:
            stacked = feeds[0]
        else:
            stacked = {name: np.concatenate([f[name] for f in feeds]) for name in feeds[0]}
        (embedding,) = self._session.run(["embedding"], stacked)
        return embedding

    # --- items added at runtime (services.retrieval.added) ---------------------------------

    def prepare_items(self, items: Sequence[NewItem]) -> np.ndarray:
        """Validate + encode (any thread); then add_prepared on the serving thread."""
        return self.added.prepare(items)

    def add_prepared(self, items: Sequence[NewItem], vectors: np.ndarray) -> list[Added]:
        added = self.added.apply(self.index, items, vectors)
        if self.table is not None and added:
            self.table = self.table.with_added(
                [a.row for a in added],
                [a.item.tags for a in added],
                np.stack([a.vector for a in added]),
            )
        self.catalog = self.added.catalog()
        return added

    def add_items(self, items: Sequence[NewItem]) -> list[Added]:
        return self.add_prepared(items, self.prepare_items(items))

    def adopt_added(self, old: Retriever) -> None:
        """Carry `old`'s added items into this bundle (hot reload): re-encoded from their text
        with this bundle's encoder, rows recomputed for this bundle's n."""
        items = carry_over(
            old.added, self.added.base, self.added.dim, self.added.encoder is not None
        )
        if items:
            self.add_items(items)
            log.info("hot reload: %d added items carried into %s", len(items), self.bundle_version)

    async def retrieve_batched(
        self, user: UserState, k: int, filters: FilterSpec = NO_FILTERS
    ) -> CandidateList:
        """retrieve(), with the user-tower calls of concurrent requests on this event loop
        shared: one ONNX Runtime call for every request that reaches the tower while the first
        one yields (services.platform.loop_batching); a lone request runs at once. A bad user
        fails alone (validated before it joins)."""
        query = await self.towers.run(self.tower_feeds(user))
        return self.retrieve(user, k, filters, query)

    def retrieve(
        self,
        user: UserState,
        k: int,
        filters: FilterSpec = NO_FILTERS,
        query: np.ndarray | None = None,
    ) -> CandidateList:
        """Top-k items by inner product with the user embedding, filters applied in the search.
        query: the user's embedding float32[D] when the caller computed it (`embed`), else the
        tower runs here."""
        self._check_k(k)
        if query is None:
            query = self.user_embedding(user)
        excluded = self.catalog.indices(filters.exclude_items)
        if filters.exclude_seen:
            excluded = np.concatenate((excluded, user.seen_items()))
        found = self._search(query, k, filters, excluded)
        if self.buy_again and not filters.exclude_seen:
            found = self._with_bought(found, query, user.seen, k, filters, excluded)
        # (a new CandidateList, not dataclasses.replace: that costs microseconds per request)
        return CandidateList(
            found.item_indices, found.scores, bundle_version=found.bundle_version, query=query
        )

    def _search(
        self, query: np.ndarray, k: int, filters: FilterSpec, excluded: np.ndarray
    ) -> CandidateList:
        """The top k eligible items: without a mask when the filters only drop rows
        (CandidateIndex.search_excluding), else through the eligibility mask."""
        found = None
        if not (filters.include_tags or filters.exclude_tags):
            found = self.index.search_excluding(query, k, excluded)
        if found is None:
            found = self.index.search(query, k, self.index.eligible(filters, excluded))
        return found

    def _with_bought(
        self,
        found: CandidateList,
        query: np.ndarray,
        seen: np.ndarray,
        k: int,
        filters: FilterSpec,
        excluded: np.ndarray,
    ) -> CandidateList:
        """Buy again: the user's earlier items (the best k of them by the retrieval score, the
        filters honoured) join the top k whether or not the search reached them, so the ranker
        sees them; -> up to 2k candidates, best first."""
        bought = np.asarray(seen, dtype=np.int64)
        bought = bought[(bought > 0) & (bought < self.index.embeddings.shape[0])]
        eligible = self.index.eligible(filters, excluded)  # None: nothing filtered
        if eligible is not None:
            bought = bought[eligible[bought]]
        bought = np.setdiff1d(bought, found.item_indices)
        if bought.size == 0:
            return found
        scores = self.index.embeddings[bought] @ np.asarray(query, dtype=np.float32)
        if bought.size > k:
            top = np.argpartition(-scores, k - 1)[:k]
            bought, scores = bought[top], scores[top]
        rows = np.concatenate((found.item_indices, bought))
        merged = np.concatenate((found.scores, scores.astype(np.float32)))
        order = np.argsort(-merged, kind="stable")
        return CandidateList(rows[order], merged[order])

    def similar(self, item_id: str, k: int, filters: FilterSpec = NO_FILTERS) -> CandidateList:
        """Items closest to `item_id` (never itself). exclude_seen has no user here: ignored."""
        self._check_k(k)
        if not item_id:
            raise InvalidArgument("item_id is empty")
        row = self.catalog.index(item_id)
        if row == 0:
            raise NotFound(f"unknown item {item_id!r}")
        excluded = np.concatenate(([row], self.catalog.indices(filters.exclude_items)))
        return self._search(self.index.embeddings[row], k, filters, excluded)

    def set_items_available(self, item_ids: Sequence[str], available: bool) -> int:
        """Take items out of retrieval or put them back (all ids must be known: NotFound
        otherwise, nothing changes); -> how many changed."""
        if any(not i for i in item_ids):
            raise InvalidArgument("empty id among item_ids")
        rows = self.catalog.indices(item_ids)
        unknown = [i for i, r in zip(item_ids, rows.tolist(), strict=True) if r == 0]
        if unknown:
            raise NotFound(f"unknown items {unknown[:5]}")
        return self.index.set_available(rows, available)

    def adopt_availability(self, old: Retriever) -> None:
        """Carry `old`'s unavailable items (by id) into this bundle's index (hot reload); call
        after adopt_added so added items keep theirs too."""
        if old.index.unavailable == 0:
            return
        gone = np.flatnonzero(~old.index.available[1:]) + 1
        gone = gone[old.index.in_index(gone)]
        ids = [old.catalog.by_index(int(r)).item_id for r in gone]
        rows = self.catalog.indices(ids)
        self.index.set_available(rows[rows > 0], False)

    def tag_affinities(self, user: UserState, k: int) -> list[tuple[str, float]]:
        """Best k of a distribution over all tags (sums to 1), learned from behaviour:

            0.45 · tag shares of the user's recent history (recency weight 0.95^position)
          + 0.45 · tag shares of the model's predicted next items (top 100 unseen, softmax of
                   the retrieval scores at tag_temperature, RECSERVE_TAG_TEMPERATURE = 0.1)
          + 0.10 · tag popularity (a prior, and the whole answer for a cold user)

        Chosen on a validation split carved from the training data (reports/eval.md scores it
        against tag popularity and the user's own tag history)."""
        if k <= 0:
            raise InvalidArgument(f"k={k} must be positive")
        # Tags first seen on items added at runtime have no training interactions: prior 0.
        masks = self.index.tag_masks
        prior = np.pad(self._tag_popularity, (0, masks.shape[0] - self._tag_popularity.size))
        probs = prior
        if not user.is_cold:
            history = user.history[(user.history > 0) & (user.history < masks.shape[1])]
            recency = TAG_HISTORY_DECAY ** np.arange(history.size)
            from_history = _normalise(masks[:, history] @ recency)
            nxt = self.retrieve(user, TAG_NEXT_ITEMS, FilterSpec(exclude_seen=True))
            weights = np.exp((nxt.scores - nxt.scores.max(initial=0.0)) / self.tag_temperature)
            from_model = _normalise(masks[:, nxt.item_indices] @ weights)
            probs = 0.45 * from_history + 0.45 * from_model + 0.10 * prior
            probs = _normalise(probs)
        order = np.argsort(-probs, kind="stable")[:k]
        return [(self.index.tags[i], float(probs[i])) for i in order.tolist()]


def _normalise(mass: np.ndarray) -> np.ndarray:
    """Non-negative tag mass -> float64 distribution (all zeros stay zeros)."""
    mass = np.asarray(mass, dtype=np.float64)
    total = mass.sum()
    return mass / total if total > 0 else mass
