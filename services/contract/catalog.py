"""The item catalog of a bundle (items.parquet + item_ids.npy), indexed by item row.

Shared by the feature store (GetItems), retrieval (tags, ids) and anyone who turns candidate
indices back into item ids, titles and tags (e.g. the gateway).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.contract.added_items import NewItem, assign_rows
from services.contract.bundle import Bundle
from services.contract.errors import NotFound
from services.contract.types import ItemInfo
from services.contract.vocab import Vocabulary


def tag_masks(tags: Sequence[str], item_tags: Sequence[Sequence[str]]) -> np.ndarray:
    """bool[T, rows]: [t, i] is True when item row i carries tags[t] (tags not in `tags` are
    ignored). The one place the item x tag matrix behind every tag filter is built."""
    position = {t: j for j, t in enumerate(tags)}
    masks = np.zeros((len(position), len(item_tags)), dtype=bool)
    # One scatter for all (tag, row) pairs: a numpy assignment per row costs ~1.5 s at 1M items.
    lengths = np.fromiter((len(names) for names in item_tags), np.int64, count=len(item_tags))
    flat = [t for names in item_tags for t in names]
    columns = np.fromiter((position.get(t, -1) for t in flat), np.int64, count=len(flat))
    owners = np.repeat(np.arange(len(item_tags), dtype=np.int64), lengths)
    known = columns >= 0
    masks[columns[known], owners[known]] = True
    return masks


UNKNOWN_ITEM = ItemInfo("", 0, "", (), 0, 0)


def read_item_columns(bundle: Bundle) -> dict[str, pa.Array]:
    """items.parquet as whole columns, nulls already replaced by the defaults ("" / () / 0).

    Column-wise so a million-item catalog is read without a Python loop per field."""
    table = pq.read_table(bundle.path("items.parquet"))
    out = {}
    for name, default in (("item_id", ""), ("title", ""), ("year", 0), ("popularity", 0)):
        if name not in table.column_names:  # a dataset without that column
            out[name] = pa.array([default] * table.num_rows)
            continue
        column = table.column(name).combine_chunks()
        out[name] = pc.fill_null(column, pa.scalar(default, type=column.type))
    tags = table.column("tags").combine_chunks()
    out["tags"] = pc.fill_null(tags, pa.scalar([], type=tags.type))
    out["item_index"] = table.column("item_index").combine_chunks()
    return out


def _optional_column(bundle: Bundle, name: str) -> tuple[np.ndarray, pa.Array] | None:
    """(item rows, items.parquet column `name`), reading only those two columns; None for a
    dataset without that column."""
    path = bundle.path("items.parquet")
    if name not in pq.read_schema(path).names:
        return None
    table = pq.read_table(path, columns=["item_index", name])
    rows = table.column("item_index").combine_chunks().to_numpy().astype(np.int64)
    return rows, table.column(name).combine_chunks()


def item_prices(bundle: Bundle, n_rows: int) -> np.ndarray | None:
    """float64[n_rows] prices by item row (NaN: none), or None when the dataset has no price
    column (items.parquet `price`, in the dataset's currency)."""
    found = _optional_column(bundle, "price")
    if found is None:
        return None
    rows, column = found
    prices = np.full(n_rows, np.nan)
    prices[rows] = pc.fill_null(column.cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    return prices


def unavailable_rows(bundle: Bundle) -> np.ndarray:
    """int64 item rows the dataset marks unavailable (items.parquet `available` false); empty
    for a dataset without that column. Such items are never recommended."""
    found = _optional_column(bundle, "available")
    if found is None:
        return np.zeros(0, dtype=np.int64)
    rows, column = found
    available = pc.fill_null(column, True).to_numpy(zero_copy_only=False).astype(bool)
    return rows[~available]


def tag_matrix(tags: Sequence[str], column: pa.ListArray, rows: np.ndarray, n_rows: int):
    """bool[n_rows, T]: [r, t] when the item in row rows[k] (column entry k) carries tags[t];
    tags not in `tags` are ignored. tag_masks(...).T for an Arrow list column, vectorised."""
    position = {t: j for j, t in enumerate(tags)}
    values = column.flatten().cast(pa.string()).to_numpy(zero_copy_only=False)
    offsets = column.offsets.to_numpy()
    owner = np.repeat(np.asarray(rows, dtype=np.int64), np.diff(offsets))
    names, codes = np.unique(values.astype(str), return_inverse=True)
    col_of = np.array([position.get(n, -1) for n in names.tolist()], dtype=np.int64)
    cols = col_of[codes.reshape(-1)] if codes.size else np.zeros(0, np.int64)
    out = np.zeros((n_rows, len(position)), dtype=bool)
    known = cols >= 0
    out[owner[known], cols[known]] = True
    return out


class ItemCatalog:
    """Row i (1..n) describes item index i; row 0 is the unknown item. Items added at runtime
    (services.contract.added_items) follow at rows n + 1, ... in an extended copy
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
        columns = read_item_columns(bundle)
        index = columns["item_index"].to_pylist()
        built = list(
            map(
                ItemInfo,
                columns["item_id"].cast(pa.string()).to_pylist(),
                index,
                columns["title"].cast(pa.string()).to_pylist(),
                map(tuple, columns["tags"].to_pylist()),
                columns["year"].to_pylist(),
                columns["popularity"].to_pylist(),
            )
        )
        infos = [UNKNOWN_ITEM] * len(vocab)
        if len(built) < len(vocab) and index == list(range(1, len(built) + 1)):  # the writer's
            infos[1 : len(built) + 1] = built
        else:
            for row, info in zip(index, built, strict=True):
                infos[row] = info
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
