"""Items added at runtime, on the ranking side (docs/new_items.md).

The ranker scores an added item by its own row and features: its row past the bundle's (the
registry's order, services.contract.added_items.assign_rows), its tags and its item-tower vector
in the ranker's item table (`OnnxRanker.add_items`). The vector is computed as retrieval
computes it, by the one shared function (services.contract.added_items.item_vectors: the
explicit embedding the registry stores, else the item's text through the bundle's content
encoder); embedded, the ranker takes the in-process retriever's vectors as they are.

`RankerItems` is one ranker's state of added items:
- split mode: the ranking service's item sync (services.platform.item_sync, the same as
  retrieval's) hands it the whole registry (`apply_registry`): what the ranker lacks or holds
  at another row / with other text is encoded off the event loop and added to its table;
- embedded mode: `apply_added` with the retriever's `Added` records (services.gateway.stages.
  inprocess), where the retriever indexes them.

Rows the ranker does not hold (its sync lags the registry; every added row with a
schema_version 1 ranker.onnx, whose item features are graph constants) are scored as row 0, the
unknown item (`OnnxRanker.prepare`, `known_rows`): never an out-of-range error.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING

import numpy as np

from services.contract.added_items import AddedItem, NewItem, item_vectors, stale_entries
from services.contract.errors import RecserveError
from services.contract.item_table import unknown_as_zero
from services.contract.types import UserState
from services.platform import metrics

if TYPE_CHECKING:
    from services.contract.bundle import Bundle

log = logging.getLogger(__name__)


_UNKNOWN_ROWS = metrics.UNKNOWN_ITEM_ROWS.labels("ranking")


def known_rows(user: UserState, items: np.ndarray, n_rows: int) -> tuple[UserState, np.ndarray]:
    """Candidates and history rows past the `n_rows` a ranker holds -> row 0 (the unknown
    item); negative rows are left for the range check to reject (bad input)."""
    items, past = unknown_as_zero(items, n_rows)
    history, past_in_history = unknown_as_zero(user.history, n_rows)
    if past_in_history:
        user = dataclasses.replace(user, history=history)
    if past or past_in_history:
        _UNKNOWN_ROWS.inc(past + past_in_history)
    return user, items


class RankerItems:
    """Added items as one OnnxRanker holds them. `encoder`: a callable that returns the
    bundle's content encoder (or None), called once, lazily, off the event loop."""

    def __init__(
        self,
        ranker,  # services.ranking.ranker.OnnxRanker (not imported: it imports known_rows)
        n_base_rows: int,
        in_base: Callable[[str], bool],
        encoder: Callable[[], object | None] = lambda: None,
    ) -> None:
        self.ranker = ranker
        self.n_base_rows = n_base_rows
        self.in_base = in_base
        self._encoder_fn = encoder
        self._encoder: list[object | None] = []  # [] = not loaded yet
        self._lock = threading.Lock()
        self.by_id: dict[str, tuple[int, NewItem]] = {}  # id -> (row, item) in the table
        self._warned = False

    @classmethod
    def from_bundle(cls, bundle: Bundle, ranker) -> RankerItems:
        from services.contract.content import ContentEncoder
        from services.contract.vocab import Vocabulary

        vocab = Vocabulary.load(bundle.path("item_ids.npy"))
        return cls(
            ranker, len(vocab), vocab.__contains__, lambda: ContentEncoder.from_bundle(bundle)
        )

    @property
    def can_hold(self) -> bool:
        """False for a schema_version 1 ranker (no item table): added rows score as row 0."""
        if self.ranker.table is not None:
            return True
        if not self._warned:
            self._warned = True
            log.warning(
                "ranker.onnx of bundle %s is schema_version 1 (item features are constants): "
                "items added at runtime are scored as the unknown item (row 0)",
                self.ranker.bundle_version,
            )
        return False

    @property
    def encoder(self):
        with self._lock:
            if not self._encoder:
                self._encoder.append(self._encoder_fn())
            return self._encoder[0]

    def pending(self, entries: Sequence[AddedItem]) -> list[NewItem]:
        """Registry entries (every one, ordinal order) to (re)add, rows set."""
        return stale_entries(entries, self.n_base_rows, self.in_base, self.by_id.get)

    def prepare(self, items: Sequence[NewItem]) -> tuple[list[NewItem], np.ndarray]:
        """Vectors of a batch (any thread); when the batch fails, item by item, dropping (and
        logging) those that fail: an entry no vector can be computed for never blocks others."""
        dim = self.ranker.table.dim if self.ranker.table is not None else 0
        try:
            return list(items), item_vectors(items, self.encoder, dim)
        except RecserveError:
            pass
        kept, vectors = [], []
        for item in items:
            try:
                vectors.append(item_vectors([item], self.encoder, dim)[0])
                kept.append(item)
            except RecserveError as exc:
                log.warning("item sync: cannot score added item %r: %s", item.item_id[:40], exc)
        return kept, np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)

    def apply(self, items: Sequence[NewItem], vectors: np.ndarray) -> int:
        """Add prepared items (rows set) to the ranker's table; -> how many."""
        if not items or not self.can_hold:
            return 0
        self.ranker.add_items([i.row for i in items], [i.tags for i in items], vectors)
        by_id = dict(self.by_id)
        by_id.update((i.item_id, (i.row, i)) for i in items)
        self.by_id = by_id
        return len(items)

    def apply_added(self, added: Iterable) -> int:
        """Embedded mode: the retriever's `Added` records (item, row, vector), the vectors as
        retrieval computed them; only those this ranker does not hold as they are."""
        fresh = []
        for a in added:
            have = self.by_id.get(a.item.item_id)
            if have is None or have[0] != a.row or have[1] is not a.item:
                fresh.append(a)
        if not fresh or not self.can_hold:
            return 0
        items = [a.item for a in fresh]
        return self.apply(items, np.stack([a.vector for a in fresh]))

    def index_pending(self, entries: Sequence[AddedItem]) -> int:
        """Blocking: the registry entries this ranker lacks (a ranker not serving yet)."""
        if not self.can_hold:
            return 0
        items = self.pending(entries)
        if not items:
            return 0
        return self._applied(*self.prepare(items))

    async def apply_registry(self, entries: Sequence[AddedItem]) -> int:
        """The item sync's callback: encoding in a worker thread, the table swapped on the
        loop; -> how many were added."""
        if not self.can_hold:
            return 0
        items = self.pending(entries)
        if not items:
            return 0
        kept, vectors = await asyncio.to_thread(self.prepare, items)
        return self._applied(kept, vectors)

    def _applied(self, kept: list[NewItem], vectors: np.ndarray) -> int:
        n = self.apply(kept, vectors)
        if n:
            log.info("item sync: %d added items in the ranker (%d in all)", n, len(self.by_id))
        return n
