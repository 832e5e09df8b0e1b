"""The item catalog the gateway answers with: ids, titles, tags and popularity order.

Loaded once from the bundle's items.parquet. Arrays are indexed by item index (row 0 = the
unknown item), so every lookup and every filter is one numpy operation over N candidates.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow.parquet as pq

from services.common.bundle import Bundle
from services.common.types import FilterSpec


@dataclass(frozen=True)
class ItemCatalog:
    """Item facts by item index. I = number of rows (items + 1), T = number of tags."""

    version: str
    ids: np.ndarray  # str[I], "" at row 0
    titles: np.ndarray  # str[I]
    item_tags: tuple[tuple[str, ...], ...]  # [I]
    tag_names: tuple[str, ...]  # [T]
    tag_matrix: np.ndarray  # bool[I, T]
    popularity: np.ndarray  # int64[I]: training interactions
    by_popularity: np.ndarray  # int64[I-1]: item indices, most popular first
    id_index: dict[str, int]  # external id -> item index

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> ItemCatalog:
        table = pq.read_table(bundle.path("items.parquet")).to_pydict()
        return cls.from_rows(
            bundle.version,
            item_indices=table["item_index"],
            item_ids=table["item_id"],
            titles=table["title"],
            tags=table["tags"],
            popularity=table["popularity"],
            tag_names=bundle.feature_spec.tags,
        )

    @classmethod
    def from_rows(
        cls,
        version: str,
        *,
        item_indices: Sequence[int],
        item_ids: Sequence[str],
        titles: Sequence[str],
        tags: Sequence[Sequence[str]],
        popularity: Sequence[int],
        tag_names: Iterable[str] = (),
    ) -> ItemCatalog:
        rows = np.asarray(item_indices, dtype=np.int64)
        if rows.size and not np.array_equal(np.sort(rows), np.arange(1, rows.size + 1)):
            raise ValueError("items.parquet item_index must be 1..n without gaps")
        size = rows.size + 1
        ids = np.full(size, "", dtype=object)
        ids[rows] = list(item_ids)
        titles_arr = np.full(size, "", dtype=object)
        titles_arr[rows] = list(titles)
        item_tags: list[tuple[str, ...]] = [()] * size
        for row, row_tags in zip(rows.tolist(), tags, strict=True):
            item_tags[row] = tuple(row_tags or ())
        names = tuple(dict.fromkeys([*tag_names, *(t for ts in item_tags for t in ts)]))
        column = {t: j for j, t in enumerate(names)}
        matrix = np.zeros((size, len(names)), dtype=bool)
        for row, row_tags in enumerate(item_tags):
            matrix[row, [column[t] for t in row_tags]] = True
        pop = np.zeros(size, dtype=np.int64)
        pop[rows] = np.asarray(popularity, dtype=np.int64)
        # Most popular first; ties broken by item index so the order is deterministic.
        order = np.lexsort((np.arange(size), -pop))
        return cls(
            version=version,
            ids=ids.astype(str),
            titles=titles_arr.astype(str),
            item_tags=tuple(item_tags),
            tag_names=names,
            tag_matrix=matrix,
            popularity=pop,
            by_popularity=order[order != 0].astype(np.int64),
            id_index={str(s): int(i) for i, s in zip(rows.tolist(), item_ids, strict=True)},
        )

    def __len__(self) -> int:
        """Number of known items."""
        return len(self.ids) - 1

    def index_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """External ids -> int64 item indices (0 for unknown ids)."""
        return np.fromiter((self.id_index.get(i, 0) for i in item_ids), dtype=np.int64)

    def allowed(
        self, item_indices: np.ndarray, filters: FilterSpec, seen: np.ndarray | None = None
    ) -> np.ndarray:
        """bool[N]: which of these item indices pass the filters (seen = the user's items)."""
        items = np.asarray(item_indices, dtype=np.int64)
        keep = items > 0
        if filters.include_tags:
            keep &= self.tag_matrix[np.ix_(items, self._tag_columns(filters.include_tags))].any(1)
        if filters.exclude_tags:
            keep &= ~self.tag_matrix[np.ix_(items, self._tag_columns(filters.exclude_tags))].any(1)
        if filters.exclude_items:
            keep &= ~np.isin(items, self.index_of(filters.exclude_items))
        if filters.exclude_seen and seen is not None and len(seen):
            keep &= ~np.isin(items, seen)
        return keep

    def popular(
        self, k: int, filters: FilterSpec = FilterSpec(), seen: np.ndarray | None = None
    ) -> np.ndarray:
        """int64[<=k]: the k most popular items that pass the filters."""
        order = self.by_popularity
        return order[self.allowed(order, filters, seen)][:k]

    def popularity_scores(self, item_indices: np.ndarray) -> np.ndarray:
        """float32[N] in [0, 1]: popularity relative to the most popular item."""
        top = max(int(self.popularity.max(initial=0)), 1)
        return (self.popularity[np.asarray(item_indices, dtype=np.int64)] / top).astype(np.float32)

    def _tag_columns(self, tags: Iterable[str]) -> list[int]:
        # Unknown tags match nothing: include_tags=["nope"] keeps nothing, exclude drops nothing.
        wanted = set(tags)
        return [j for j, name in enumerate(self.tag_names) if name in wanted]
