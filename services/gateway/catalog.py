"""What the gateway needs of the item catalog, as arrays: ids, titles, tags, popularity order.

Built once from the bundle's items.parquet columns (services.contract.catalog). Everything is
indexed by item index (row 0 = the unknown item), so filtering N candidates or picking the
popular items for a cold user is one numpy pass, not a Python loop over the catalog.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace

import numpy as np
import pyarrow as pa

from services.contract.added_items import NewItem
from services.contract.bundle import Bundle
from services.contract.catalog import (
    item_prices,
    read_item_columns,
    tag_masks,
    tag_matrix,
    unavailable_rows,
)
from services.contract.content import has_content_encoder
from services.contract.types import FilterSpec, ItemInfo
from services.contract.vocab import Vocabulary
from services.gateway.wire import ItemWire

NO_FILTERS = FilterSpec()


@dataclass(frozen=True)
class GatewayCatalog:
    """I = rows (items + 1, row 0 unknown), T = tags."""

    version: str
    ids: np.ndarray  # str[I], "" at row 0
    titles: np.ndarray  # str[I]
    item_tags: tuple[tuple[str, ...], ...]  # [I]
    tag_names: tuple[str, ...]  # [T]
    tag_matrix: np.ndarray  # bool[I, T]
    popularity: np.ndarray  # int64[I]: training interactions
    by_popularity: np.ndarray  # int64[I - 1]: item indices, most popular first
    id_index: dict[str, int]  # external id -> item index
    # What AddItems checks before registering anything (services.gateway.new_items): the
    # item-tower dimension (0 = unknown: not checked here) and whether the bundle can encode
    # text; `n_base` = the bundle's rows (row 0 included), where added rows start.
    embedding_dim: int = 0
    content_encoder: bool = True
    n_base: int = 0
    # float64[I] item prices in the dataset's currency (NaN: no price); None: no price column.
    prices: np.ndarray | None = None

    def price(self, row: int) -> float | None:
        if self.prices is None or not 0 <= row < self.prices.size:
            return None
        value = float(self.prices[row])
        return None if np.isnan(value) else value

    @functools.cached_property
    def tags_by_row(self) -> np.ndarray:
        """object[I]: item_tags as an array (per catalog, built once: `CatalogHolder` builds it
        before publishing), so the tags of k rows are one gather, not a loop over them."""
        return np.fromiter(self.item_tags, dtype=object, count=len(self.item_tags))

    @functools.cached_property
    def prices_by_row(self) -> np.ndarray:
        """object[I]: `price(row)` for every row (float, or None: no price), built once."""
        out = np.full(len(self.ids), None, dtype=object)
        if self.prices is not None:
            n = min(self.prices.size, out.size)
            values = self.prices[:n].astype(np.float64)
            priced = np.flatnonzero(~np.isnan(values))
            out[priced] = values[priced].tolist()
        return out

    @functools.cached_property
    def _wires(self) -> dict[str, ItemWire]:
        return {}

    def item_wire(self, currency: str) -> ItemWire:
        """The RecommendedItem bytes of this catalog's rows with prices in `currency`
        (services.gateway.wire; its rows are encoded on first use)."""
        wire = self._wires.get(currency)
        if wire is None:
            wire = self._wires[currency] = ItemWire(
                self.ids, self.titles, self.tags_by_row, self.prices_by_row, currency
            )
        return wire

    def warm(self) -> GatewayCatalog:
        """Build the per-catalog caches now (not on the first request that needs them)."""
        _ = self.tags_by_row, self.prices_by_row
        return self

    @property
    def base_rows(self) -> int:
        return self.n_base or len(self.ids)

    def in_base(self, item_id: str) -> bool:
        """Whether the bundle itself has this id (added items do not count)."""
        return 0 < self.id_index.get(item_id, 0) < self.base_rows

    def extended(self, added: Sequence[tuple[int, NewItem]]) -> GatewayCatalog:
        """A copy with items added at runtime at their rows (row, item): popularity 0, so they
        come last in the popularity order. Rows between stay empty."""
        n = len(self.ids)
        top = max([n - 1, *(row for row, _ in added)])
        ids, titles = self.ids.astype(object), self.titles.astype(object)
        item_tags = list(self.item_tags)
        grow = top + 1 - n
        ids = np.concatenate((ids, np.full(grow, "", dtype=object)))
        titles = np.concatenate((titles, np.full(grow, "", dtype=object)))
        item_tags += [()] * grow
        id_index = dict(self.id_index)
        for row, item in added:
            ids[row], titles[row], item_tags[row] = item.item_id, item.title, tuple(item.tags)
            id_index[item.item_id] = row
        # Tags are data: a tag first seen on an added item joins the vocabulary (a new column),
        # so filters on it work at once. Only the added rows' tags are (re)computed: the whole
        # catalog's would cost O(n) per AddItems call (about a second at 1M items).
        added_tags = [tuple(i.tags) for _, i in added]
        names = _tag_names(self.tag_names, added_tags)
        added_rows = np.array([row for row, _ in added], dtype=np.int64)
        matrix = np.zeros((top + 1, len(names)), dtype=bool)
        matrix[:n, : len(self.tag_names)] = self.tag_matrix
        matrix[added_rows] = tag_masks(names, added_tags).T
        popularity = np.concatenate((self.popularity, np.zeros(grow, dtype=np.int64)))
        rows = np.unique(added_rows)
        order = np.concatenate((self.by_popularity, rows[~np.isin(rows, self.by_popularity)]))
        prices = self.prices
        if prices is not None:  # added items carry no price
            prices = np.concatenate((prices, np.full(grow, np.nan)))
        return replace(
            self, ids=ids.astype(str), titles=titles.astype(str), item_tags=tuple(item_tags),
            tag_names=names, tag_matrix=matrix, popularity=popularity, by_popularity=order,
            id_index=id_index, prices=prices,
        )  # fmt: skip

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> GatewayCatalog:
        """Straight from items.parquet's columns: the same catalog as from_infos over
        ItemCatalog's rows, without a Python object per item (start-up at 1M items)."""
        n_rows = len(Vocabulary.load(bundle.path("item_ids.npy")))
        columns = read_item_columns(bundle)
        rows = columns["item_index"].to_numpy().astype(np.int64)
        ids = np.full(n_rows, "", dtype=object)
        ids[rows] = columns["item_id"].cast(pa.string()).to_numpy(zero_copy_only=False)
        titles = np.full(n_rows, "", dtype=object)
        titles[rows] = columns["title"].cast(pa.string()).to_numpy(zero_copy_only=False)
        item_tags: list[tuple[str, ...]] = [()] * n_rows
        for row, tags in zip(rows.tolist(), columns["tags"].to_pylist(), strict=True):
            item_tags[row] = tuple(tags)
        popularity = np.zeros(n_rows, dtype=np.int64)
        popularity[rows] = columns["popularity"].to_numpy(zero_copy_only=False)
        names = _tag_names(bundle.feature_spec.tags, item_tags)
        matrix = tag_matrix(names, columns["tags"], rows, n_rows)
        catalog = cls._assemble(bundle.version, ids, titles, item_tags, popularity, names, matrix)
        # Items the dataset marks unavailable are not even a popular fallback.
        order = catalog.by_popularity
        order = order[~np.isin(order, unavailable_rows(bundle))]
        return replace(
            catalog,
            by_popularity=order,
            embedding_dim=bundle.embedding_dim,
            content_encoder=has_content_encoder(bundle.manifest),
            prices=item_prices(bundle, n_rows),
        )

    @classmethod
    def from_infos(
        cls, version: str, infos: list[ItemInfo], tag_names: Iterable[str] = ()
    ) -> GatewayCatalog:
        """infos[i] describes item index i; infos[0] is the unknown item."""
        item_tags = [tuple(info.tags) for info in infos]
        names = _tag_names(tag_names, item_tags)
        return cls._assemble(
            version,
            [info.item_id for info in infos],
            [info.title for info in infos],
            item_tags,
            np.array([info.popularity for info in infos], dtype=np.int64),
            names,
            tag_masks(names, item_tags).T,
        )

    @classmethod
    def _assemble(
        cls,
        version: str,
        ids: Sequence[str] | np.ndarray,
        titles: Sequence[str] | np.ndarray,
        item_tags: Sequence[tuple[str, ...]],
        popularity: np.ndarray,
        names: tuple[str, ...],
        matrix: np.ndarray,
    ) -> GatewayCatalog:
        """Rows 0..I-1 (row 0 the unknown item) -> the catalog with its popularity order."""
        popularity = np.array(popularity, dtype=np.int64)
        popularity[0] = -1  # the unknown row sorts last and is dropped below
        # Most popular first; ties broken by item index so the order is deterministic.
        order = np.lexsort((np.arange(len(popularity)), -popularity))
        popularity[0] = 0
        id_list = list(ids)
        return cls(
            version=version,
            ids=np.array(id_list, dtype=str),
            titles=np.array(list(titles), dtype=str),
            item_tags=tuple(item_tags),
            tag_names=names,
            tag_matrix=np.ascontiguousarray(matrix),
            popularity=popularity,
            by_popularity=order[:-1].astype(np.int64),
            id_index=dict(zip(id_list[1:], range(1, len(id_list)), strict=True)),
            n_base=len(id_list),
        )

    def __len__(self) -> int:
        """Number of known items."""
        return len(self.ids) - 1

    def index_of(self, item_ids: Iterable[str]) -> np.ndarray:
        """External ids -> int64 item indices (0 for unknown ids)."""
        return np.fromiter((self.id_index.get(i, 0) for i in item_ids), dtype=np.int64)

    def unknown_tags(self, tags: Iterable[str]) -> list[str]:
        return [t for t in tags if t not in self.tag_names]

    def allowed(
        self, item_indices: np.ndarray, filters: FilterSpec, seen: np.ndarray | None = None
    ) -> np.ndarray:
        """bool[N]: which of these item indices pass the filters (seen: the user's items)."""
        items = np.asarray(item_indices, dtype=np.int64)
        keep = (items > 0) & (items < len(self.ids))  # rows this catalog has not synced: out
        items = np.where(keep, items, 0)
        if filters.include_tags:
            keep &= self.tag_matrix[np.ix_(items, self._columns(filters.include_tags))].any(1)
        if filters.exclude_tags:
            keep &= ~self.tag_matrix[np.ix_(items, self._columns(filters.exclude_tags))].any(1)
        if filters.exclude_items:
            keep &= ~np.isin(items, self.index_of(filters.exclude_items))
        if filters.exclude_seen and seen is not None and len(seen):
            keep &= ~_members(items, seen)
        return keep

    def popular(
        self, k: int, filters: FilterSpec = NO_FILTERS, seen: np.ndarray | None = None
    ) -> np.ndarray:
        """int64[<= k]: the k most popular items that pass the filters."""
        # Walk the popularity order in blocks: a million-item catalog is not filtered whole
        # when the first few thousand items already hold k that pass.
        block = max(1024, 8 * k)
        found, n_found = [], 0
        for start in range(0, len(self.by_popularity), block):
            rows = self.by_popularity[start : start + block]
            rows = rows[self.allowed(rows, filters, seen)]
            found.append(rows)
            n_found += rows.size
            if n_found >= k:
                break
        return np.concatenate(found)[:k] if found else np.zeros(0, dtype=np.int64)

    def popularity_scores(self, item_indices: np.ndarray) -> np.ndarray:
        """float32[N] in [0, 1]: popularity relative to the most popular item."""
        top = max(int(self.popularity.max(initial=0)), 1)
        return (self.popularity[np.asarray(item_indices, dtype=np.int64)] / top).astype(np.float32)

    def _columns(self, tags: Iterable[str]) -> list[int]:
        wanted = set(tags)
        return [j for j, name in enumerate(self.tag_names) if name in wanted]


def _members(items: np.ndarray, values: np.ndarray) -> np.ndarray:
    """bool[N]: np.isin(items, values) for int64 rows, by binary search of the sorted values
    (np.isin's general path costs more than the search at a request's few hundred rows)."""
    values = np.asarray(values, dtype=np.int64)
    if values.size > 1 and (values[1:] < values[:-1]).any():
        values = np.sort(values)
    at = np.searchsorted(values, items)
    return values[np.minimum(at, values.size - 1)] == items


def _tag_names(known: Iterable[str], item_tags: Sequence[tuple[str, ...]]) -> tuple[str, ...]:
    """The bundle's tags, then any other tag in order of first appearance by item row."""
    return tuple(dict.fromkeys([*known, *(t for tags in item_tags for t in tags)]))


class CatalogHolder:
    """The live catalog, copy-on-write. A request reads `current` once, at its start, and uses
    only that snapshot; items added at runtime (services.gateway.new_items) publish a new
    catalog with `update`, which requests already in flight never see."""

    def __init__(self, catalog: GatewayCatalog) -> None:
        self._current = catalog.warm()
        self._lock = threading.Lock()  # writers: the event loop, and a reload's build thread

    @property
    def current(self) -> GatewayCatalog:
        return self._current

    def update(self, change: Callable[[GatewayCatalog], GatewayCatalog | None]) -> GatewayCatalog:
        """Publish `change(current)` (None: nothing to publish) as one reference assignment;
        -> the catalog now current."""
        with self._lock:
            new = change(self._current)
            if new is not None:
                self._current = new.warm()
            return self._current
