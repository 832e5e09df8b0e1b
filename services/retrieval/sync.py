"""Retrieval's side of the item sync (services.platform.item_sync): index what the feature
service's registry holds and this process lacks, e.g. after a restart or when another replica
took the AddItems call. Text is re-encoded with this bundle's content encoder; an item added
with only an explicit embedding is indexed from the vector the registry stores.

Encoding runs in a worker thread; changing the index runs on the event loop, where searches
run (services.retrieval.added). An entry this bundle cannot index (no content encoder and no
vector, a vector of another dimension) is logged and skipped: it never blocks the others.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import numpy as np

from services.contract.added_items import AddedItem, NewItem
from services.contract.errors import RecserveError
from services.retrieval.retriever import Retriever

log = logging.getLogger(__name__)


def prepare_each(
    retriever: Retriever, items: Sequence[NewItem]
) -> tuple[list[NewItem], np.ndarray]:
    """Encode a batch; when the batch fails, item by item, dropping those that fail."""
    try:
        return list(items), retriever.prepare_items(items)
    except RecserveError:
        pass
    kept, vectors = [], []
    for item in items:
        try:
            vectors.append(retriever.prepare_items([item])[0])
            kept.append(item)
        except RecserveError as exc:
            log.warning("item sync: cannot index added item %r: %s", item.item_id[:40], exc)
    dim = retriever.added.dim
    return kept, np.stack(vectors) if vectors else np.zeros((0, dim), dtype=np.float32)


def index_pending(retriever: Retriever, entries: Sequence[AddedItem]) -> int:
    """Blocking form, for a retriever not serving yet (built by a hot reload's thread)."""
    items = retriever.added.pending(entries)
    if not items:
        return 0
    kept, vectors = prepare_each(retriever, items)
    return _add(retriever, kept, vectors)


async def apply_registry(retriever: Retriever, entries: Sequence[AddedItem]) -> int:
    """Index the registry entries `retriever` lacks (encoding in a worker thread, the index
    changed on the loop); -> how many were indexed."""
    items = retriever.added.pending(entries)
    if not items:
        return 0
    kept, vectors = await asyncio.to_thread(prepare_each, retriever, items)
    return _add(retriever, kept, vectors)


def _add(retriever: Retriever, kept: list[NewItem], vectors: np.ndarray) -> int:
    if kept:
        retriever.add_prepared(kept, vectors)
        total = len(retriever.added.by_id)
        log.info("item sync: %d added items indexed (%d in all)", len(kept), total)
    return len(kept)
