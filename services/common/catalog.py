"""The item catalog of a bundle (items.parquet + item_ids.npy), indexed by item row.

Shared by the feature store (GetItems), retrieval (tags, ids) and anyone who turns candidate
indices back into item ids, titles and tags (e.g. the gateway).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow.parquet as pq

from services.common.added_items import NewItem, assign_rows
from services.common.bundle import Bundle
from services.common.errors import NotFound
from services.common.types import ItemInfo
from services.common.vocab import Vocabulary


def tag_masks(tags: Sequence[str], item_tags: Sequence[Sequence[str]]) -> np.ndarray:
    """bool[T, rows]: [t, i] is True when item row i carries tags[t] (tags not in `tags` are
    ignored). The one place the item x tag matrix behind every tag filter is built."""
    position = {t: j for j, t in enumerate(tags)}
    masks = np.zeros((len(position), len(item_tags)), dtype=bool)
    for row, names in enumerate(item_tags):
        masks[[position[t] for t in names if t in position], row] = True
    return masks


class ItemCatalog:
    """Row i (1..n) describes item index i; row 0 is the unknown item. Items added at runtime
    (services.common.added_items) follow at rows n + 1, ... in an extended copy
    (`with_added`); `vocab` stays the bundle's, so `index`/`indices` are the lookups that
    know added items too."""

    def __init__(
        self,
        vocab: Vocabulary,
        infos: Sequence[ItemInfo],
        tags: Sequence[str],
        *,
        added: dict[str, int] | None = None,
        n_base_rows: int | None = None,
    ) -> None:
        self.vocab = vocab
        self._infos = list(infos)
        self.tags = tuple(tags)
        self.popularity = np.fromiter((i.popularity for i in self._infos), dtype=np.int64)
        self._added = dict(added or {})
        self.n_base_rows = len(self._infos) if n_base_rows is None else n_base_rows

    def with_added(
        self, items: Sequence[NewItem], rows: dict[str, int] | None = None
    ) -> ItemCatalog:
        """A copy holding the bundle's rows plus `items` (registry entries in ordinal order;
        ids the bundle has are skipped) at rows n + 1, ... (added_items.assign_rows), or at
        the given `rows` (id -> row; rows nobody holds yet stay empty, like row 0)."""
        if rows is None:
            rows = assign_rows(items, self.n_base_rows, self.vocab.__contains__)
        by_id = {item.item_id: item for item in items}
        rows = {i: r for i, r in rows.items() if i in by_id and r >= self.n_base_rows}
        infos = self._infos[: self.n_base_rows]
        infos.extend([self._infos[0]] * (max(rows.values(), default=0) + 1 - len(infos)))
        for item_id, row in rows.items():
            item = by_id[item_id]
            infos[row] = ItemInfo(item_id, row, item.title, tuple(item.tags), 0, 0)
        return ItemCatalog(self.vocab, infos, self.tags, added=rows, n_base_rows=self.n_base_rows)

    @property
    def n_added(self) -> int:
        return len(self._infos) - self.n_base_rows

    def is_added(self, row: int) -> bool:
        return row >= self.n_base_rows

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ItemCatalog:
        vocab = Vocabulary.load(bundle.path("item_ids.npy"))
        table = pq.read_table(bundle.path("items.parquet")).to_pydict()
        infos = [ItemInfo("", 0, "", (), 0, 0)] * len(vocab)
        for item_id, index, title, tags, year, pop in zip(
            table["item_id"],
            table["item_index"],
            table["title"],
            table["tags"],
            table["year"],
            table["popularity"],
            strict=True,
        ):
            infos[int(index)] = ItemInfo(
                item_id=str(item_id),
                item_index=int(index),
                title=str(title or ""),
                tags=tuple(tags or ()),
                year=int(year or 0),
                popularity=int(pop or 0),
            )
        return cls(vocab, infos, bundle.feature_spec.tags)

    def __len__(self) -> int:
        """Rows including the unknown row 0."""
        return len(self._infos)

    @property
    def n_items(self) -> int:
        return len(self._infos) - 1

    def index(self, item_id: str) -> int:
        """0 when unknown."""
        return self.vocab.index(item_id) or self._added.get(item_id, 0)

    def indices(self, item_ids: Sequence[str]) -> np.ndarray:
        if not self._added:
            return self.vocab.indices(item_ids)
        return np.fromiter((self.index(i) for i in item_ids), dtype=np.int64)

    def id_of(self, row: int) -> str:
        return self._infos[row].item_id

    def by_index(self, item_index: int) -> ItemInfo:
        return self._infos[item_index]

    def by_indices(self, item_indices: Sequence[int] | np.ndarray) -> list[ItemInfo]:
        infos = self._infos
        return [infos[i] for i in np.asarray(item_indices, dtype=np.int64).tolist()]

    def by_ids(self, item_ids: Sequence[str]) -> list[ItemInfo]:
        """NotFound names the first unknown id."""
        out = []
        for item_id in item_ids:
            row = self.index(item_id)
            if row == 0:
                raise NotFound(f"unknown item {item_id!r}")
            out.append(self._infos[row])
        return out
