"""The registry of items added at runtime, in process memory (services.contract.added_items).

Ordinals are allocated in the order ids are first added and never change; re-adding an id
updates its facts in place. Each update bumps the change counter, which is what replicas sync
on (ListAddedItems). The in-memory feature store makes every upsert durable in its event log
before applying it here, and replays the log through `upsert` on restart, so ordinals come back
the same. The Redis store keeps the registry in Redis and mirrors it here (services.feature.
redis_registry). Not thread-safe on its own: the owning store serialises writers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from services.contract.added_items import AddedItem, NewItem

DEFAULT_LIST_LIMIT = 1_000


def merged(old: NewItem | None, new: NewItem) -> NewItem:
    """What the registry stores for an upsert: the new facts, without row. While the text is
    unchanged, a missing embedding keeps the old one (a re-add must not forget it); a given one
    replaces it. New text without an embedding drops the old vector: the text is re-encoded."""
    item = replace(new, row=0, tags=tuple(new.tags))
    if old is not None and item.embedding is None and item.same_content(old):
        item = replace(item, embedding=old.embedding)
    return item


class ItemRegistry:
    """Entries keyed by ordinal. A mirror filled from change-ordered pulls may see a higher
    ordinal before a lower one (an older entry updated later), so `put` accepts any order;
    rows are only computed after a complete pull, when the ordinals have no gaps."""

    def __init__(self) -> None:
        self._by_ordinal: dict[int, AddedItem] = {}
        self._ordinal: dict[str, int] = {}
        self._sorted: list[AddedItem] | None = []
        self.change = 0

    def __len__(self) -> int:
        return len(self._by_ordinal)

    def upsert(self, items: Sequence[NewItem]) -> list[AddedItem]:
        """-> the entries as now stored (row 0: rows belong to a bundle, see the store)."""
        out = []
        for new in items:
            self.change += 1
            ordinal = self._ordinal.get(new.item_id)
            if ordinal is None:
                ordinal = max(self._by_ordinal, default=0) + 1
                entry = AddedItem(ordinal, 0, merged(None, new), self.change)
            else:
                old = self._by_ordinal[ordinal]
                entry = AddedItem(ordinal, 0, merged(old.item, new), self.change)
            self.put(entry)
            out.append(entry)
        return out

    def put(self, entry: AddedItem) -> None:
        """Store an entry exactly as given (snapshots, a mirror of Redis)."""
        self._by_ordinal[entry.ordinal] = entry
        self._ordinal[entry.item.item_id] = entry.ordinal
        self._sorted = None
        self.change = max(self.change, entry.change)

    def get(self, item_id: str) -> AddedItem | None:
        ordinal = self._ordinal.get(item_id)
        return None if ordinal is None else self._by_ordinal[ordinal]

    def entries(self) -> list[AddedItem]:
        """Every entry, in ordinal order."""
        if self._sorted is None:
            self._sorted = [self._by_ordinal[o] for o in sorted(self._by_ordinal)]
        return list(self._sorted)

    def items(self) -> list[NewItem]:
        return [e.item for e in self.entries()]

    def changed_after(self, after: int, limit: int = DEFAULT_LIST_LIMIT) -> list[AddedItem]:
        """Entries whose last change is > after, in change order, at most `limit`."""
        found = [e for e in self._by_ordinal.values() if e.change > after]
        found.sort(key=lambda e: e.change)
        return found[:limit]
