"""OnnxRanker: scores candidate items for one user with ranker.onnx.

Inputs user_index int64[B], profile int64[B, P], history int64[B, H], items int64[B, N] and
(bundle schema_version 2) the items' side features, gathered from the bundle's item table
(services.contract.item_table): history_tags float32[B, H, T], history_attrs int64[B, H, A],
item_tags float32[B, N, T], item_attrs int64[B, N, A], item_vectors float32[B, N, D] (only
those the graph declares). Items added at runtime (`add_items`: rows past the bundle's) are
scored by their own tags and vector; a proxy row (a bundle row) is scored like any other.
A schema_version 1 ranker.onnx (features as constants, indices only) is still served, for
the bundle's rows only. Outputs p_positive float32[B, N] (P(rating >= 4)), rating
float32[B, N] (in [1, 5]) and p_interact float32[B, N] (P(interact), the order of a
recommendation list). A ranker.onnx without p_interact (a bundle from before that output) is
still served: its p_positive stands in for p_interact.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from services.contract.bundle import Bundle
from services.contract.errors import FailedPrecondition, InvalidArgument
from services.contract.item_table import ItemTable, feature_inputs
from services.contract.model_inputs import UserInputs
from services.contract.onnx import create_session
from services.contract.types import RankScores, UserState
from services.contract.vocab import Vocabulary
from services.ranking.added import known_rows

log = logging.getLogger(__name__)

DEFAULT_MAX_CANDIDATES = 1_000
_OUTPUTS = ["p_positive", "rating", "p_interact"]
_LEGACY_OUTPUTS = ["p_positive", "rating"]


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
    ) -> None:
        """table: the bundle's item table; required when the graph takes item features."""
        self._session = session
        self.inputs = inputs
        self.features = feature_inputs(session)
        self._history_features = tuple(n for n in self.features if n.startswith("history_"))
        self._item_features = tuple(n for n in self.features if not n.startswith("history_"))
        if self.features and table is None:
            raise ValueError(f"ranker.onnx takes {list(self.features)}: an item table is needed")
        self.table = table if self.features else None
        self.bundle_version = bundle_version
        self.provider = provider
        self.max_candidates = max_candidates
        names = {o.name for o in session.get_outputs()}
        self.has_p_interact = "p_interact" in names
        self._outputs = _OUTPUTS if self.has_p_interact else _LEGACY_OUTPUTS
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
        n_item_rows = len(Vocabulary.load(bundle.path("item_ids.npy")))
        table = ItemTable.from_bundle(bundle) if feature_inputs(session) else None
        log.info("ranker for bundle %s runs on %s", bundle.version, provider)
        return cls(
            session,
            UserInputs.from_bundle(bundle, n_item_rows=n_item_rows),
            bundle_version=bundle.version,
            provider=provider,
            max_candidates=max_candidates,
            table=table,
        )

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

    def prepare(self, user: UserState, item_indices: np.ndarray) -> tuple[dict, np.ndarray]:
        """Validate one request -> (user feeds, items int64[N]); InvalidArgument when bad. Rows
        past the ones this ranker holds (an added item not synced yet; any added row with a
        schema_version 1 graph) are scored as row 0, the unknown item (services.ranking.added)."""
        items = np.asarray(item_indices, dtype=np.int64).reshape(-1)
        if items.size > self.max_candidates:
            raise InvalidArgument(
                f"{items.size} candidates; at most {self.max_candidates} per call"
            )
        table = self.table
        n_rows = table.n_rows if table is not None else None
        user, items = known_rows(user, items, self.n_item_rows if n_rows is None else n_rows)
        self.inputs.check_items(items, "candidate item index", n_rows)
        return self.inputs.feeds(user, table, self._history_features), items

    def rank_prepared(self, prepared: list[tuple[dict, np.ndarray]]) -> list[RankScores]:
        """B prepared requests -> one ONNX Runtime call over int64[B, max N] (shorter candidate
        lists padded with item 0, the unknown item; the padding is cut off again)."""
        if max(items.size for _, items in prepared) == 0:
            return [_empty() for _ in prepared]
        p_positive, rating, p_interact = self._run(self.batch_feeds(prepared))
        return [
            RankScores(
                p_positive=p_positive[row, : its.size].astype(np.float32),
                rating=rating[row, : its.size].astype(np.float32),
                p_interact=p_interact[row, : its.size].astype(np.float32),
            )
            for row, (_, its) in enumerate(prepared)
        ]

    def batch_feeds(self, prepared: list[tuple[dict, np.ndarray]]) -> dict[str, np.ndarray]:
        """B prepared requests -> every input of the graph (batch_feeds plus the candidates'
        features)."""
        feeds = batch_feeds(prepared)
        if self.table is not None:
            feeds.update(self.table.feeds(self._item_features, items=feeds["items"]))
        return feeds

    def _run(self, feeds: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """-> (p_positive, rating, p_interact), each float[B, N]; p_interact = p_positive for a
        ranker.onnx without that output."""
        out = self._session.run(self._outputs, feeds)
        if self.has_p_interact:
            return out[0], out[1], out[2]
        return out[0], out[1], out[0]

    def warm_up(self, max_batch: int = 1, n_candidates: int = 200) -> None:
        """Run every batch size once so the first real requests do not pay ORT's lazy set-up."""
        user = UserState("warm-up", False, 0, np.zeros(0, np.int64), np.zeros(0, np.int64))
        items = np.arange(1, min(n_candidates, self.n_item_rows - 1) + 1, dtype=np.int64)
        one = self.prepare(user, items)
        size = 1
        while True:
            self.rank_prepared([one] * size)
            if size >= max_batch:
                break
            size = min(size * 2, max_batch)

    def rank(self, user: UserState, item_indices: np.ndarray) -> RankScores:
        """item_indices int64[N] (order kept) -> RankScores aligned with them."""
        feeds, items = self.prepare(user, item_indices)
        if items.size == 0:
            return _empty()
        feeds["items"] = items.reshape(1, -1)
        if self.table is not None:
            feeds.update(self.table.feeds(self._item_features, items=feeds["items"]))
        p_positive, rating, p_interact = self._run(feeds)
        return RankScores(
            p_positive=p_positive[0].astype(np.float32, copy=False),
            rating=rating[0].astype(np.float32, copy=False),
            p_interact=p_interact[0].astype(np.float32),  # a copy: may alias p_positive
        )


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


def _empty() -> RankScores:
    return RankScores(
        p_positive=np.zeros(0, np.float32),
        rating=np.zeros(0, np.float32),
        p_interact=np.zeros(0, np.float32),
    )
