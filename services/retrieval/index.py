"""CandidateIndex: FAISS inner-product search over item embeddings with filters applied inside
the search (an ID selector), so a filtered query still returns k eligible items.

Labels are item indices 1..n (docs/bundle.md). Per-tag item masks are precomputed once;
a query's eligibility is a bool[n + 1] mask packed into an IDSelectorBitmap.

A query that only drops a few rows (the user's seen items, exclude_items; no tag filter, every
item available) skips the mask: `search_excluding` asks FAISS for k + (rows dropped) without a
selector and removes them from the answer, which holds the same items the selector search
would find. On a large IVF index the selector costs more than the search itself (the mask is
built and packed over every row, and FAISS checks each scanned id), so this is the common case
made cheap: on the 1M-item bundle a Recommend's search went from ~0.40 to ~0.11 ms.

An exact (flat, inner product) index is searched in numpy instead of FAISS: one matrix-vector
product over every row, the ineligible rows set to -inf, a partial sort. Same items as FAISS's
flat search up to float rounding, without a mask packed for FAISS; one thread, about half
FAISS's time from 1.7k to 50k items (training builds flat indexes below 50k items).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import faiss
import numpy as np

from services.contract.catalog import tag_masks
from services.contract.errors import InvalidArgument
from services.contract.types import CandidateList, FilterSpec

_EMPTY = CandidateList(np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32))
_NO_TAGS = FilterSpec()  # eligible() reads only the tag filters


class CandidateIndex:
    """`index`: FAISS index whose labels are item rows; `embeddings`: float32[n + 1, D] (row 0
    zeros) used for exact search over small eligible sets; `item_tags`: tags per item row."""

    def __init__(
        self,
        index: faiss.Index,
        embeddings: np.ndarray,
        tags: Sequence[str],
        item_tags: Sequence[Sequence[str]],
        *,
        exact_below: int = 0,
    ) -> None:
        self.index = index
        self.embeddings = np.ascontiguousarray(embeddings, dtype=np.float32)
        self.n_rows = self.embeddings.shape[0]
        self.tags = tuple(tags)
        self._tag_pos = {t: i for i, t in enumerate(self.tags)}
        self.tag_masks = np.zeros((len(self.tags), self.n_rows), dtype=bool)  # bool[T, n + 1]
        self.tag_masks[:, : len(item_tags)] = tag_masks(self.tags, item_tags)
        self._base = _base_index(index)
        # Runtime availability (sold out, withdrawn): False rows are never returned. Row 0 is
        # the padding row, never an item.
        self.available = np.ones(self.n_rows, dtype=bool)
        self.available[0] = False
        self._unavailable = 0
        self._base_rows = self.n_rows  # bundle rows incl. row 0; added items follow
        self._added_rows = np.zeros(0, dtype=np.int64)
        # Optional: below this many eligible items, score them exactly instead of asking FAISS
        # (0 = always FAISS with the selector; exact search is then only the fallback when an
        # approximate index cannot reach k eligible items).
        self.exact_below = exact_below
        # An exact inner-product index: searched by one numpy scan of `embeddings` (_scan).
        self.scans = (
            isinstance(self._base, faiss.IndexFlat)
            and self._base.metric_type == faiss.METRIC_INNER_PRODUCT
        )

    @classmethod
    def load(
        cls,
        path: Path,
        embeddings: np.ndarray,
        tags: Sequence[str],
        item_tags: Sequence[Sequence[str]],
        *,
        exact_below: int = 0,
    ) -> CandidateIndex:
        return cls(
            faiss.read_index(str(path)), embeddings, tags, item_tags, exact_below=exact_below
        )

    def tag_mask(self, tags: Sequence[str]) -> np.ndarray:
        """bool[n + 1]: items carrying any of `tags`. InvalidArgument for an unknown tag."""
        unknown = [t for t in tags if t not in self._tag_pos]
        if unknown:
            raise InvalidArgument(f"unknown tags {unknown}; known: {', '.join(self.tags)}")
        return self.tag_masks[[self._tag_pos[t] for t in tags]].any(axis=0)

    def eligible(
        self, filters: FilterSpec, excluded_rows: np.ndarray | None = None
    ) -> np.ndarray | None:
        """bool[n + 1] mask of items a query may return, or None when nothing is filtered.

        excluded_rows: item rows to drop (seen items, exclude_items, the query item)."""
        if (
            not (filters.include_tags or filters.exclude_tags)
            and (excluded_rows is None or excluded_rows.size == 0)
            and self._unavailable == 0
        ):
            return None
        mask = self.available.copy()
        if filters.include_tags:
            mask &= self.tag_mask(filters.include_tags)
        if filters.exclude_tags:
            mask &= ~self.tag_mask(filters.exclude_tags)
        if excluded_rows is not None and excluded_rows.size:
            rows = excluded_rows[(excluded_rows > 0) & (excluded_rows < self.n_rows)]
            mask[rows] = False
        return mask

    @property
    def unavailable(self) -> int:
        return self._unavailable

    def set_available(self, rows: np.ndarray, available: bool) -> int:
        """Mark item rows (1..n) available or not; -> how many changed. Copy-on-write, so a
        search running in another thread sees the old or the new mask, never a torn one."""
        rows = np.unique(np.asarray(rows, dtype=np.int64))
        if rows.size and not self.in_index(rows).all():
            raise InvalidArgument(f"item rows must be items in 1..{self.n_rows - 1}")
        mask = self.available.copy()
        changed = int(np.count_nonzero(mask[rows] != available))
        mask[rows] = available
        self.available = mask
        self._unavailable = self._count_unavailable(mask)
        return changed

    def add(
        self, rows: np.ndarray, vectors: np.ndarray, item_tags: Sequence[Sequence[str]]
    ) -> None:
        """Put item vectors (float32[N, D], normalised) under `rows` (items added at runtime).

        New rows grow `embeddings`, `available` and `tag_masks` (rows skipped in between stay
        empty and unavailable); an existing row gets its new vector where the index can remove
        ids (Flat) and keeps its first one where it cannot (HNSW: FAISS has no removal there).
        Arrays are replaced copy-on-write, never resized in place, so a search holding the old
        ones stays consistent; callers serialise writers and never run one during a search
        (services.retrieval.added does both on the event loop). A tag the vocabulary lacks
        joins it (a new mask row), so filters on it work at once."""
        rows = np.asarray(rows, dtype=np.int64)
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n_rows = max(self.n_rows, int(rows.max(initial=0)) + 1)
        embeddings, available, masks = self.embeddings, self.available, self.tag_masks
        tags = tuple(dict.fromkeys([*self.tags, *(t for names in item_tags for t in names)]))
        if len(tags) > len(self.tags):
            masks = np.concatenate(
                (masks, np.zeros((len(tags) - len(self.tags), masks.shape[1]), dtype=bool))
            )
        if n_rows > self.n_rows:
            grow = n_rows - self.n_rows
            embeddings = np.concatenate(
                (embeddings, np.zeros((grow, embeddings.shape[1]), np.float32))
            )
            available = np.concatenate((available, np.zeros(grow, dtype=bool)))
            masks = np.concatenate((masks, np.zeros((masks.shape[0], grow), dtype=bool)), axis=1)
        else:
            embeddings, available, masks = embeddings.copy(), available.copy(), masks.copy()
        present = rows[rows < self.n_rows]
        present = present[self.in_index(present)]
        keep = np.ones(rows.size, dtype=bool)
        if present.size:
            try:
                self.index.remove_ids(present)
            except RuntimeError:  # HNSW cannot remove: those rows keep their first vector
                keep = ~np.isin(rows, present)
        if keep.any():
            self.index.add_with_ids(vectors[keep], rows[keep])
        embeddings[rows[keep]] = vectors[keep]
        masks[:, rows] = tag_masks(tags, item_tags)
        newly = rows[~self.in_index(rows)]
        available[newly] = True
        self._added_rows = np.union1d(self._added_rows, rows)
        self.embeddings, self.tag_masks, self.available = embeddings, masks, available
        self.tags, self._tag_pos = tags, {t: i for i, t in enumerate(tags)}
        self.n_rows = n_rows
        self._unavailable = self._count_unavailable(available)

    def in_index(self, rows: np.ndarray) -> np.ndarray:
        """bool per row: the row holds an item (a bundle item, or one added at runtime)."""
        rows = np.asarray(rows, dtype=np.int64)
        return ((rows > 0) & (rows < self._base_rows)) | np.isin(rows, self._added_rows)

    def _count_unavailable(self, available: np.ndarray) -> int:
        n_items = self._base_rows - 1 + self._added_rows.size
        return int(n_items - np.count_nonzero(available))

    def search_excluding(
        self, query: np.ndarray, k: int, excluded_rows: np.ndarray
    ) -> CandidateList | None:
        """The top k items but `excluded_rows`, from one unfiltered search of k + (rows dropped)
        results; None where that shortcut does not hold and the caller searches with a mask
        (`eligible`, `search`): some item is unavailable, more rows are dropped than k, the
        eligible set is small enough to score exactly, or the answer came back short of k (an
        approximate index that did not reach k eligible items). An exact index (`scans`)
        answers every such query by its scan, with these rows masked out."""
        rows = np.asarray(excluded_rows, dtype=np.int64)
        if self.scans:  # exact in any case: the available rows but these
            return self.search(query, k, self.eligible(_NO_TAGS, rows))
        if self._unavailable:
            return None
        rows = np.unique(rows[(rows > 0) & (rows < self.n_rows)])
        if rows.size > k or self.index.ntotal - rows.size <= max(self.exact_below, k):
            return None
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        found = self._faiss_search(query, k + rows.size, None)
        items = found.item_indices
        if rows.size:
            at = np.minimum(np.searchsorted(rows, items), rows.size - 1)
            keep = np.flatnonzero(rows[at] != items)[:k]
            found = CandidateList(items[keep], found.scores[keep])
        elif items.size > k:
            found = CandidateList(items[:k], found.scores[:k])
        return found if len(found) == k else None

    def search(
        self, query: np.ndarray, k: int, eligible: np.ndarray | None = None
    ) -> CandidateList:
        """query float32[D] -> up to k items, best first (fewer only if fewer are eligible)."""
        if self.scans:
            return self._scan(query, k, self.available if eligible is None else eligible)
        query = np.ascontiguousarray(query, dtype=np.float32).reshape(1, -1)
        if eligible is None:
            return self._faiss_search(query, k, None)
        n_eligible = int(np.count_nonzero(eligible))
        if n_eligible == 0:
            return _EMPTY
        if n_eligible <= max(self.exact_below, k):  # every eligible item fits: score exactly
            return self._exact_search(query[0], k, np.flatnonzero(eligible))
        bitmap = np.packbits(eligible, bitorder="little")
        selector = faiss.IDSelectorBitmap(eligible.size, faiss.swig_ptr(bitmap))
        found = self._faiss_search(query, k, self._params(selector, k))
        if len(found) < k:  # approximate index could not reach k eligible items: be exact
            return self._exact_search(query[0], k, np.flatnonzero(eligible))
        return found

    def _faiss_search(
        self, query: np.ndarray, k: int, params: faiss.SearchParameters | None
    ) -> CandidateList:
        k = min(k, self.index.ntotal)
        if k <= 0:
            return _EMPTY
        scores, labels = self.index.search(query, k, params=params)
        keep = labels[0] >= 0
        return CandidateList(labels[0][keep].astype(np.int64), scores[0][keep].astype(np.float32))

    def _scan(self, query: np.ndarray, k: int, mask: np.ndarray) -> CandidateList:
        """Exact top k of the rows where `mask` (bool[n + 1]) is True: every row scored, the
        others set to -inf (row 0 and rows holding no item are never available)."""
        k = min(k, int(np.count_nonzero(mask)))
        if k <= 0:
            return _EMPTY
        scores = self.embeddings @ np.asarray(query, dtype=np.float32).reshape(-1)
        top = _best(np.where(mask, scores, np.float32(-np.inf)), k)
        return CandidateList(top.astype(np.int64), scores[top])

    def _exact_search(self, query: np.ndarray, k: int, rows: np.ndarray) -> CandidateList:
        scores = self.embeddings[rows] @ query
        top = _best(scores, k)
        return CandidateList(rows[top].astype(np.int64), scores[top].astype(np.float32))

    def _params(self, selector: faiss.IDSelector, k: int) -> faiss.SearchParameters:
        """Search parameters of the right subclass for the index behind any IDMap."""
        base = self._base
        if isinstance(base, faiss.IndexHNSW):
            return faiss.SearchParametersHNSW(sel=selector, efSearch=max(base.hnsw.efSearch, k))
        if isinstance(base, faiss.IndexIVF):
            return faiss.SearchParametersIVF(sel=selector, nprobe=base.nprobe)
        return faiss.SearchParameters(sel=selector)


def _best(scores: np.ndarray, k: int) -> np.ndarray:
    """Positions of the k highest scores (all of them when k >= their number), best first;
    ties keep the lower position."""
    top = np.argpartition(-scores, k - 1)[:k] if k < scores.size else np.arange(scores.size)
    return top[np.argsort(-scores[top], kind="stable")]


def _base_index(index: faiss.Index) -> faiss.Index:
    index = faiss.downcast_index(index)
    while isinstance(index, faiss.IndexIDMap | faiss.IndexIDMap2 | faiss.IndexPreTransform):
        index = faiss.downcast_index(index.index)
    return index
