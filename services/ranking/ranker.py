"""OnnxRanker: scores candidate items for one user with ranker.onnx.

Inputs user_index int64[B], profile int64[B, P], history int64[B, H], items int64[B, N] and
(bundle schema_version 2) the items' side features, gathered from the bundle's item table
(services.contract.item_table): history_tags float32[B, H, T], history_attrs int64[B, H, A],
item_tags float32[B, N, T], item_attrs int64[B, N, A], item_vectors float32[B, N, D] (only those
the graph declares) and, for a graph that reads the history's events, history_age float32[B, H]
/ history_kind int64[B, H] from the user's state (UserInputs.feeds). Items added at runtime
(`add_items`: rows past the bundle's) are scored by their own tags and vector; a row this ranker
does not hold (its item sync lags) is scored as row 0, the unknown item. A schema_version 1
ranker.onnx (features as constants, indices only) is still served; it scores every added row as
row 0. Outputs p_positive float32[B, N] (P(rating >= 4)), rating float32[B, N] (in [1, 5]) and
p_interact float32[B, N] (P(interact), the order of a recommendation list). A ranker.onnx
without p_interact (a bundle from before that output) is still served: its p_positive stands in
for p_interact.

Two graphs (a bundle with rater.onnx, docs/bundle.md): ranker.onnx gives p_interact only and
rater.onnx p_positive and rating, both from the same inputs (each fed those it declares, from
the same item table). `rate_top_k` (per request) = k > 0 rates only the k candidates with the
highest p_interact (ties: the earlier candidate, as the gateway's stable sort); the others get
NaN p_positive and rating. 0 (or k >= N) rates every candidate. A single-graph bundle computes
every output for every candidate, whatever rate_top_k says.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from services.contract.bundle import Bundle
from services.contract.errors import FailedPrecondition, InvalidArgument
from services.contract.features import HISTORY_EVENT_INPUTS
from services.contract.item_table import FEATURE_INPUTS, ItemTable, event_inputs, feature_inputs
from services.contract.model_inputs import QUERY_INPUT, UserInputs
from services.contract.onnx import create_session
from services.contract.types import RankScores, UserState
from services.contract.vocab import Vocabulary
from services.ranking.added import known_rows

log = logging.getLogger(__name__)

DEFAULT_MAX_CANDIDATES = 1_000
_OUTPUTS = ["p_positive", "rating", "p_interact"]
_LEGACY_OUTPUTS = ["p_positive", "rating"]
_RATER_OUTPUTS = ["p_positive", "rating"]
RATER_FILE = "rater.onnx"


class OnnxRanker:
    def __init__(
        self,
        session,
        inputs: UserInputs,
        *,
        bundle_version: str,
        provider: str,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
        table: ItemTable | None = None,
        rater=None,
        tower=None,
    ) -> None:
        """table: the bundle's item table; required when a graph takes item features.
        rater: the rater.onnx session (None: ranker.onnx gives every output). tower: the
        user_tower.onnx session, required when ranker.onnx takes user_embedding (its frozen
        retrieval score's query): it computes the embedding of a request that brings none."""
        self._session = session
        self._rater = rater
        self.inputs = inputs
        self._ranker_inputs = tuple(i.name for i in session.get_inputs())
        self._rater_inputs = tuple(i.name for i in rater.get_inputs()) if rater else ()
        self.takes_query = QUERY_INPUT in self._ranker_inputs
        if self.takes_query and tower is None:
            raise ValueError(f"ranker.onnx takes {QUERY_INPUT}: user_tower.onnx is needed")
        self._tower = tower if self.takes_query else None
        self._tower_inputs = tuple(i.name for i in tower.get_inputs()) if self._tower else ()
        shape = next((i.shape for i in session.get_inputs() if i.name == QUERY_INPUT), [None])
        self.query_dim = shape[-1] if isinstance(shape[-1], int) else None
        sessions = [s for s in (session, rater, self._tower) if s is not None]
        features = {n for s in sessions for n in feature_inputs(s)}
        # Both graphs' feature inputs, gathered once per call; each session gets its own.
        self.features = tuple(n for n in FEATURE_INPUTS if n in features)
        # The history's events (history_age, history_kind) come with the user inputs, from the
        # user's state: no item table for them.
        events = {n for s in sessions for n in event_inputs(s)}
        self._history_features = (
            *(n for n in self.features if n.startswith("history_")),
            *(n for n in HISTORY_EVENT_INPUTS if n in events),
        )
        self._item_features = tuple(n for n in self.features if not n.startswith("history_"))
        self._rater_items = tuple(n for n in self._item_features if n in self._rater_inputs)
        if self.features and table is None:
            raise ValueError(f"ranker.onnx takes {list(self.features)}: an item table is needed")
        self.table = table if self.features else None
        self.bundle_version = bundle_version
        self.provider = provider
        self.max_candidates = max_candidates
        names = {o.name for o in session.get_outputs()}
        self.has_p_interact = "p_interact" in names
        self._outputs = _OUTPUTS if self.has_p_interact else _LEGACY_OUTPUTS
        if rater is not None:
            rated = {o.name for o in rater.get_outputs()}
            if not self.has_p_interact or not set(_RATER_OUTPUTS) <= rated:
                raise ValueError(
                    f"{RATER_FILE} needs ranker.onnx's p_interact and its own p_positive, rating"
                )
            self._outputs = ["p_interact"]
        if not self.has_p_interact:
            log.warning(
                "ranker.onnx of bundle %s has no p_interact output: ordering by p_positive",
                bundle_version,
            )

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        prefer_gpu: bool = True,
        intra_op_threads: int = 1,
        *,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
    ) -> OnnxRanker:
        """prefer_gpu asks for the CUDA provider first; `.provider` says what was granted."""
        session, provider = create_session(
            bundle.path("ranker.onnx"), prefer_gpu=prefer_gpu, intra_op_threads=intra_op_threads
        )
        rater = None
        if RATER_FILE in bundle.manifest.get("files", {}):
            rater, _ = create_session(
                bundle.path(RATER_FILE), prefer_gpu=prefer_gpu, intra_op_threads=intra_op_threads
            )
        tower = None
        if QUERY_INPUT in {i.name for i in session.get_inputs()}:
            tower, _ = create_session(
                bundle.path("user_tower.onnx"),
                prefer_gpu=prefer_gpu,
                intra_op_threads=intra_op_threads,
            )
        n_item_rows = len(Vocabulary.load(bundle.path("item_ids.npy")))
        needs_table = feature_inputs(session) or (rater is not None and feature_inputs(rater))
        table = ItemTable.from_bundle(bundle) if needs_table else None
        log.info(
            "ranker for bundle %s runs on %s%s",
            bundle.version,
            provider,
            f" ({RATER_FILE}: ratings for the top k only)" if rater is not None else "",
        )
        return cls(
            session,
            UserInputs.from_bundle(bundle, n_item_rows=n_item_rows),
            bundle_version=bundle.version,
            provider=provider,
            max_candidates=max_candidates,
            table=table,
            rater=rater,
            tower=tower,
        )

    @property
    def tower(self):
        """The user_tower.onnx session that embeds a request without a query (None: this
        ranker.onnx takes no user_embedding)."""
        return self._tower

    @property
    def has_rater(self) -> bool:
        """True for a bundle with rater.onnx: ratings cost only what rate_top_k asks for."""
        return self._rater is not None

    @property
    def n_item_rows(self) -> int:
        """Valid item rows: the bundle's (row 0 included) and any added ones."""
        return self.table.n_rows if self.table is not None else self.inputs.n_item_rows

    def add_items(
        self, rows: Sequence[int] | np.ndarray, tags: Sequence[Sequence[str]], vectors: np.ndarray
    ) -> None:
        """Items added at runtime (rows past the bundle's, their tags, their item-tower vectors
        float32[K, D], e.g. retrieval's Added.vector): from now on scored by their own
        features. A schema_version 1 ranker cannot (FailedPrecondition)."""
        if self.table is None:
            raise FailedPrecondition(
                f"ranker.onnx of bundle {self.bundle_version} holds item features as constants "
                "(schema_version 1): it scores bundle rows only"
            )
        self.table = self.table.with_added(rows, tags, vectors)  # one assignment: atomic

    def prepare(
        self, user: UserState, item_indices: np.ndarray, query: np.ndarray | None = None
    ) -> tuple[dict, np.ndarray]:
        """Validate one request -> (user feeds, items int64[N]); InvalidArgument when bad. Rows
        past the ones this ranker holds (an added item not synced yet; any added row with a
        schema_version 1 graph) are scored as row 0, the unknown item (services.ranking.added).
        query: the user's embedding float32[D] as retrieval computed it for this request (the
        user tower's output), fed to a ranker.onnx that takes user_embedding; None: computed
        here with user_tower.onnx. A ranker.onnx without that input ignores it."""
        items = np.asarray(item_indices, dtype=np.int64).reshape(-1)
        if items.size > self.max_candidates:
            raise InvalidArgument(
                f"{items.size} candidates; at most {self.max_candidates} per call"
            )
        table = self.table
        n_rows = table.n_rows if table is not None else None
        user, items = known_rows(user, items, self.n_item_rows if n_rows is None else n_rows)
        if items.size and items.min() < 0:  # rows past the table are 0 now: only these are bad
            self.inputs.check_items(items, "candidate item index", n_rows)
        feeds = self.inputs.feeds(user, table, self._history_features)
        if self.takes_query:
            feeds[QUERY_INPUT] = self._query(query, feeds)
        return feeds, items

    def _query(self, query: np.ndarray | None, feeds: dict) -> np.ndarray:
        """-> float32[1, D]: the given query (checked), else the user tower's output."""
        if query is None:
            (embedding,) = self._tower.run(["embedding"], {n: feeds[n] for n in self._tower_inputs})
            return embedding
        query = np.asarray(query, dtype=np.float32).reshape(1, -1)
        if self.query_dim is not None and query.shape[1] != self.query_dim:
            raise InvalidArgument(
                f"user_embedding has {query.shape[1]} values, the ranker takes {self.query_dim}"
            )
        if not np.isfinite(query).all():
            raise InvalidArgument("user_embedding values must be finite")
        return query

    def rank_prepared(
        self,
        prepared: list[tuple[dict, np.ndarray]],
        rate_top_k: Sequence[int] | None = None,
    ) -> list[RankScores]:
        """B prepared requests -> one ONNX Runtime call over int64[B, max N] (shorter candidate
        lists padded with item 0, the unknown item; the padding is cut off again), and with
        rater.onnx one more for the rated candidates. rate_top_k: per request (None: all 0,
        every candidate rated)."""
        if max(items.size for _, items in prepared) == 0:
            return [_empty() for _ in prepared]
        sizes = [its.size for _, its in prepared]
        return self._score(self.batch_feeds(prepared), sizes, rate_top_k)

    def batch_feeds(self, prepared: list[tuple[dict, np.ndarray]]) -> dict[str, np.ndarray]:
        """B prepared requests -> every input of the graph (batch_feeds plus the candidates'
        features)."""
        feeds = batch_feeds(prepared)
        if self.table is not None:
            feeds.update(self.table.feeds(self._item_features, items=feeds["items"]))
        return feeds

    def _run(self, feeds: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Single graph: -> (p_positive, rating, p_interact), each float[B, N]; p_interact =
        p_positive for a ranker.onnx without that output."""
        out = self._session.run(self._outputs, {n: feeds[n] for n in self._ranker_inputs})
        if self.has_p_interact:
            return out[0], out[1], out[2]
        return out[0], out[1], out[0]

    def _score(
        self, feeds: dict, sizes: Sequence[int], rate_top_k: Sequence[int] | None
    ) -> list[RankScores]:
        """feeds: the user inputs and items int64[B, W] with every feature input of both
        graphs; sizes: each request's real candidate count (<= W)."""
        if self._rater is None:
            p_positive, rating, p_interact = self._run(feeds)
            alias = not self.has_p_interact  # p_interact is p_positive: copy it
            return [
                RankScores(
                    p_positive=p_positive[row, :n].astype(np.float32, copy=False),
                    rating=rating[row, :n].astype(np.float32, copy=False),
                    p_interact=p_interact[row, :n].astype(np.float32, copy=alias),
                )
                for row, n in enumerate(sizes)
            ]
        ranker_feeds = {name: feeds[name] for name in self._ranker_inputs}
        (p_interact,) = self._session.run(self._outputs, ranker_feeds)
        p_interact = p_interact.astype(np.float32, copy=False)
        picks = [
            _top(p_interact[row, :n], 0 if rate_top_k is None else int(rate_top_k[row]))
            for row, n in enumerate(sizes)
        ]
        if all(p is None for p in picks):  # every candidate rated: the same items and features
            rater_feeds = {name: feeds[name] for name in self._rater_inputs}
        else:
            if len(sizes) == 1:  # one request (rank_one): its picks, no padding
                rated = feeds["items"][:, picks[0]]
            else:
                width = max(n if p is None else p.size for p, n in zip(picks, sizes, strict=True))
                rated = np.zeros((len(sizes), width), dtype=np.int64)
                for row, (pick, n) in enumerate(zip(picks, sizes, strict=True)):
                    its = feeds["items"][row, :n]
                    chosen = its if pick is None else its[pick]
                    rated[row, : chosen.size] = chosen
            rater_feeds = {
                name: feeds[name] for name in self._rater_inputs if name not in ITEM_INPUTS
            }
            rater_feeds["items"] = rated
            if self._rater_items:
                rater_feeds.update(self.table.feeds(self._rater_items, items=rated))
        p_positive, rating = self._rater.run(_RATER_OUTPUTS, rater_feeds)
        return [
            _rated(p_interact[row, :n], pick, p_positive[row], rating[row])
            for row, (pick, n) in enumerate(zip(picks, sizes, strict=True))
        ]

    def warm_up(self, max_batch: int = 1, n_candidates: int = 200) -> None:
        """Run every batch size once so the first real requests do not pay ORT's lazy set-up."""
        user = UserState("warm-up", False, 0, np.zeros(0, np.int64), np.zeros(0, np.int64))
        items = np.arange(1, min(n_candidates, self.n_item_rows - 1) + 1, dtype=np.int64)
        one = self.prepare(user, items)
        size = 1
        while True:
            self.rank_prepared([one] * size)
            if self._rater is not None:  # the top-k path: rater.onnx on fewer candidates
                self.rank_prepared([one] * size, [20] * size)
            if size >= max_batch:
                break
            size = min(size * 2, max_batch)

    def rank(
        self,
        user: UserState,
        item_indices: np.ndarray,
        rate_top_k: int = 0,
        query: np.ndarray | None = None,
    ) -> RankScores:
        """item_indices int64[N] (order kept) -> RankScores aligned with them. rate_top_k > 0
        (with rater.onnx): p_positive and rating for the top rate_top_k by p_interact only,
        NaN for the others; 0: for every candidate. query: see `prepare`."""
        return self.rank_one(self.prepare(user, item_indices, query), rate_top_k)

    def rank_one(self, prepared: tuple[dict, np.ndarray], rate_top_k: int = 0) -> RankScores:
        """One prepared request (prepare) -> its RankScores: rank_prepared for a batch of one,
        without stacking the inputs."""
        feeds, items = prepared
        if items.size == 0:
            return _empty()
        feeds = dict(feeds)
        feeds["items"] = items.reshape(1, -1)
        if self.table is not None:
            feeds.update(self.table.feeds(self._item_features, items=feeds["items"]))
        return self._score(feeds, (items.size,), (rate_top_k,))[0]


def batch_feeds(prepared: list[tuple[dict, np.ndarray]]) -> dict[str, np.ndarray]:
    """B prepared requests -> the user inputs stacked (history features included, when the
    requests carry them) and candidates int64[B, max N] padded with item 0 (the unknown item);
    the candidates' features are OnnxRanker.batch_feeds' part."""
    width = max(items.size for _, items in prepared)
    items = np.zeros((len(prepared), width), dtype=np.int64)
    for row, (_, its) in enumerate(prepared):
        items[row, : its.size] = its
    feeds = {name: np.concatenate([f[name] for f, _ in prepared]) for name in prepared[0][0]}
    feeds["items"] = items
    return feeds


ITEM_INPUTS = ("items", "item_tags", "item_attrs", "item_vectors")


def _rated(
    p_interact: np.ndarray, pick: np.ndarray | None, p_positive: np.ndarray, rating: np.ndarray
) -> RankScores:
    """One request's RankScores from rater.onnx's row of it: every candidate rated (pick None:
    the row's first N values), or the picked ones (the row's first pick.size values, spread to
    their positions; NaN for the others)."""
    n = p_interact.size
    if pick is None:
        return RankScores(
            p_positive=p_positive[:n].astype(np.float32, copy=False),
            rating=rating[:n].astype(np.float32, copy=False),
            p_interact=p_interact,
        )
    rated = np.full((2, n), np.nan, dtype=np.float32)
    rated[0, pick] = p_positive[: pick.size]
    rated[1, pick] = rating[: pick.size]
    return RankScores(p_positive=rated[0], rating=rated[1], p_interact=p_interact, top=pick)


def _top(p_interact: np.ndarray, k: int) -> np.ndarray | None:
    """Positions of the k highest p_interact (stable: ties keep the earlier candidate, as the
    gateway's sort does), in that order; None when every candidate is to be rated."""
    if k <= 0 or k >= p_interact.size:
        return None
    return np.argsort(-p_interact, kind="stable")[:k]


def _empty() -> RankScores:
    return RankScores(
        p_positive=np.zeros(0, np.float32),
        rating=np.zeros(0, np.float32),
        p_interact=np.zeros(0, np.float32),
    )
