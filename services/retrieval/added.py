"""Items added at runtime, on the retrieval side (docs/new_items.md).

An added item gets a vector in the item tower's space, from its text through the bundle's
content encoder or given explicitly (`services.contract.added_items.item_vectors`, the one
definition ranking uses too), and is indexed under the row the feature service's registry
assigned (n + j). The user tower reads an added item in a history by its own row and features
(the retriever's item table); a schema_version 1 tower (trained rows only) reads it as row 0,
the unknown item.

Encoding (ONNX, milliseconds per item) may run on any thread (`prepare`); changing the index
(`apply`) is serialised by a lock and, in the services, runs on the event loop, where searches
run too, so FAISS is never written during a search.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np

from services.contract.added_items import (
    AddedItem,
    NewItem,
    item_vectors,
    stale_entries,
    validate_new_items,
)
from services.contract.catalog import ItemCatalog
from services.contract.errors import InvalidArgument
from services.contract.item_table import unknown_as_zero
from services.platform import metrics

log = logging.getLogger(__name__)

_UNKNOWN_ROWS = metrics.UNKNOWN_ITEM_ROWS.labels("retrieval")


@dataclass(frozen=True, slots=True)
class Added:
    """What a retriever keeps per added item: enough to re-index it in a new bundle (its
    text; the explicit vector, which only survives a bundle of the same dimension)."""

    item: NewItem  # facts and text; embedding = the explicit vector given, if any
    row: int
    vector: np.ndarray


class AddedItems:
    """Per-retriever state of added items."""

    def __init__(self, catalog: ItemCatalog, encoder, dim: int) -> None:
        self.base = catalog  # the bundle's catalog (no added items)
        self.encoder = encoder  # ContentEncoder | None (None: explicit embeddings only)
        self.dim = dim
        self.by_id: dict[str, Added] = {}
        self.lock = threading.Lock()

    def prepare(self, items: Sequence[NewItem]) -> np.ndarray:
        """Validate a batch and compute its vectors (float32[N, D], normalised). Thread-safe."""
        validate_new_items(items)
        for item in items:
            if item.item_id in self.base.vocab:
                raise InvalidArgument(f"item {item.item_id[:40]!r} is already in the bundle")
            if item.row < self.base.n_base_rows:
                raise InvalidArgument(
                    f"item {item.item_id[:40]!r}: row {item.row} is not an added row (>= "
                    f"{self.base.n_base_rows}); rows come from the feature service's AddItems"
                )
        return item_vectors(items, self.encoder, self.dim)

    def apply(self, index, items: Sequence[NewItem], vectors: np.ndarray) -> list[Added]:
        """Index the prepared batch; -> one Added per item. An id already added at another row
        (the registry moved it, e.g. after a hot reload) leaves its old row, which stays empty
        and unavailable."""
        rows = np.array([item.row for item in items], dtype=np.int64)
        batch = {item.item_id for item in items}
        with self.lock:  # ids moving in this batch free their old rows for others in it
            taken = {a.row: i for i, a in self.by_id.items() if i not in batch}
            for item in items:
                holder = taken.get(item.row)
                if holder is not None and holder != item.item_id:
                    raise InvalidArgument(
                        f"row {item.row} already holds item {holder[:40]!r}, not "
                        f"{item.item_id[:40]!r}: the registry and this replica disagree"
                    )
            now_held = set(rows.tolist())
            moved = [
                self.by_id[i.item_id].row
                for i in items
                if i.item_id in self.by_id
                and self.by_id[i.item_id].row != i.row
                and self.by_id[i.item_id].row not in now_held
            ]
            index.add(rows, vectors, [item.tags for item in items])
            if moved:
                index.set_available(np.asarray(moved), False)
            added = [
                Added(replace(item, row=r), r, v)
                for item, r, v in zip(items, rows.tolist(), vectors, strict=True)
            ]
            by_id = dict(self.by_id)
            by_id.update((a.item.item_id, a) for a in added)
            self.by_id = by_id
        return added

    def pending(self, entries: Sequence[AddedItem]) -> list[NewItem]:
        """Registry entries (all of them, ordinal order: the item sync's mirror) this retriever
        must (re)index (services.contract.added_items.stale_entries), rows set."""

        def held(item_id: str) -> tuple[int, NewItem] | None:
            have = self.by_id.get(item_id)
            return None if have is None else (have.row, have.item)

        return stale_entries(entries, self.base.n_base_rows, self.base.vocab.__contains__, held)

    def catalog(self) -> ItemCatalog:
        """The bundle's catalog extended with the added items at their rows."""
        entries = sorted(self.by_id.values(), key=lambda a: a.row)
        rows = {a.item.item_id: a.row for a in entries}
        return self.base.with_added([a.item for a in entries], rows)

    def tower_history(self, history: np.ndarray, n_rows: int | None = None) -> np.ndarray:
        """History as the user tower may see it: rows past the `n_rows` it knows (default the
        bundle's: a schema_version 1 tower reads trained rows only; else its item table's,
        added items included) read as row 0, the unknown item. Negative rows are left for the
        range check to reject."""
        history, past = unknown_as_zero(
            history, self.base.n_base_rows if n_rows is None else n_rows
        )
        if past:
            _UNKNOWN_ROWS.inc(past)
        return history


def carry_over(
    old: AddedItems, new_catalog: ItemCatalog, new_dim: int, can_encode: bool
) -> list[NewItem]:
    """The old retriever's added items, re-rowed for a new bundle (hot reload): ids the new
    bundle has are dropped; rows keep their order and restart at the new n + 1, as the
    registry computes them when this replica had every entry (the registry sync corrects any
    difference). Explicit vectors travel only to a bundle of the same dimension and only when
    the item has no text to re-encode."""
    kept = [a for a in sorted(old.by_id.values(), key=lambda a: a.row)
            if a.item.item_id not in new_catalog.vocab]  # fmt: skip
    out = []
    for j, a in enumerate(kept):
        item = replace(a.item, row=new_catalog.n_base_rows + j)
        encodable = can_encode and bool(item.title.strip() or item.description.strip())
        if item.embedding is not None and (encodable or new_dim != old.dim):
            item = replace(item, embedding=None)
        if item.embedding is None and not encodable:
            log.warning("added item %r: cannot re-encode it in the new bundle", item.item_id)
            continue
        out.append(item)
    return out
