"""Items added at runtime, on the retrieval side (docs/new_items.md).

An added item gets a vector in the item tower's space, from its text through the bundle's
content encoder (services.contract.content) or given explicitly, and is indexed under the row the
feature service's registry assigned (n + j). Its *proxy* is the most similar trained item (max
inner product over the bundle's rows 1..n): models only ever see trained rows, so the user
tower reads a proxy wherever an added item sits in a history, and the ranker scores an added
candidate as its proxy (Candidates.rank_as).

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
    assign_rows,
    check_embedding,
    validate_new_items,
)
from services.contract.catalog import ItemCatalog
from services.contract.errors import FailedPrecondition, InvalidArgument

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Added:
    """What a retriever keeps per added item: enough to re-index it in a new bundle (its
    text; the explicit vector, which only survives a bundle of the same dimension)."""

    item: NewItem  # facts and text; embedding = the explicit vector given, if any
    row: int
    proxy: int
    vector: np.ndarray


class AddedItems:
    """Per-retriever state of added items. `proxy` maps every row to the row models score it
    as (itself for bundle rows, the proxy for added rows, 0 for empty rows)."""

    def __init__(self, catalog: ItemCatalog, encoder, dim: int) -> None:
        self.base = catalog  # the bundle's catalog (no added items)
        self.encoder = encoder  # ContentEncoder | None (None: explicit embeddings only)
        self.dim = dim
        self.by_id: dict[str, Added] = {}
        self.proxy = np.arange(catalog.n_base_rows, dtype=np.int64)
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
        vectors = np.zeros((len(items), self.dim), dtype=np.float32)
        to_encode = [i for i, item in enumerate(items) if item.embedding is None]
        for i, item in enumerate(items):
            if item.embedding is not None:
                vectors[i] = check_embedding(item, self.dim)
        if to_encode:
            if self.encoder is None:
                raise FailedPrecondition(
                    "this bundle has no content encoder: pass each new item's embedding "
                    f"({self.dim} floats), or serve a bundle trained with one"
                )
            encoded = self.encoder.encode([items[i].text for i in to_encode])
            vectors[to_encode] = _normalised(np.asarray(encoded, dtype=np.float32))
        return vectors

    def proxies(self, index, vectors: np.ndarray) -> np.ndarray:
        """int64[N]: the most similar bundle item (rows 1..n) of each vector."""
        trained = index.embeddings[1 : self.base.n_base_rows]
        return np.argmax(vectors @ trained.T, axis=1).astype(np.int64) + 1

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
            proxies = self.proxies(index, vectors)
            index.add(rows, vectors, [item.tags for item in items])
            if moved:
                index.set_available(np.asarray(moved), False)
            added = [
                Added(replace(item, proxy_row=p, row=r), r, p, v)
                for item, r, p, v in zip(
                    items, rows.tolist(), proxies.tolist(), vectors, strict=True
                )
            ]
            by_id = dict(self.by_id)
            by_id.update((a.item.item_id, a) for a in added)
            proxy = np.zeros(index.n_rows, dtype=np.int64)
            proxy[: self.base.n_base_rows] = np.arange(self.base.n_base_rows)
            for a in by_id.values():
                proxy[a.row] = a.proxy
            self.by_id, self.proxy = by_id, proxy
        return added

    def pending(self, entries: Sequence[AddedItem]) -> list[NewItem]:
        """Registry entries (all of them, ordinal order: the item sync's mirror) this retriever
        must (re)index: ids it lacks, holds at another row than the registry's order gives,
        or holds with other text or another explicit vector. Rows set, proxies left to
        `apply`."""
        rows = assign_rows(
            [e.item for e in entries], self.base.n_base_rows, self.base.vocab.__contains__
        )
        out = []
        for entry in entries:
            item, row = entry.item, rows.get(entry.item.item_id)
            if row is None:
                continue
            have = self.by_id.get(item.item_id)
            if (
                have is not None
                and have.row == row
                and have.item.same_content(item)
                and (item.embedding is None or have.item.same_embedding(item))
            ):
                continue
            out.append(replace(item, row=row, proxy_row=0))
        return out

    def catalog(self) -> ItemCatalog:
        """The bundle's catalog extended with the added items at their rows."""
        entries = sorted(self.by_id.values(), key=lambda a: a.row)
        rows = {a.item.item_id: a.row for a in entries}
        return self.base.with_added([a.item for a in entries], rows)

    def rank_as(self, rows: np.ndarray) -> np.ndarray | None:
        """Rows to rank candidates as, or None when none of them is an added item."""
        rows = np.asarray(rows, dtype=np.int64)
        if not rows.size or rows.max() < self.base.n_base_rows:
            return None
        proxy = self.proxy
        return np.where(rows < proxy.size, proxy[np.clip(rows, 0, proxy.size - 1)], 0)

    def tower_history(self, history: np.ndarray) -> np.ndarray:
        """History as the user tower may see it: added rows replaced by their proxies (rows
        beyond every known row are left for the range check to reject)."""
        history = np.asarray(history, dtype=np.int64)
        if not history.size or history.max() < self.base.n_base_rows:
            return history
        proxy = self.proxy
        inside = (history >= 0) & (history < proxy.size)
        return np.where(inside, proxy[np.clip(history, 0, proxy.size - 1)], history)


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


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
        item = replace(a.item, row=new_catalog.n_base_rows + j, proxy_row=0)
        encodable = can_encode and bool(item.title.strip() or item.description.strip())
        if item.embedding is not None and (encodable or new_dim != old.dim):
            item = replace(item, embedding=None)
        if item.embedding is None and not encodable:
            log.warning("added item %r: cannot re-encode it in the new bundle", item.item_id)
            continue
        out.append(item)
    return out
