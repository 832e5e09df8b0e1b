"""Gateway AddItems: register durably, index, extend the catalog.

    feature.AddItems   (durable; allocates ordinals, answers rows n + j)
      -> retrieval.AddItems (encode + index under those rows)
      -> this gateway's catalog extended copy-on-write (ids, titles, tags)

Ranking learns the items from the registry itself (its item sync; embedded: with the
in-process retriever), and scores each by its own row and features. Retrieval unavailable: the
items stay registered (acknowledged, durable) and the answer says so in `fallbacks`; a
retrieval replica that syncs from the registry indexes them later (docs/new_items.md). Ids the
bundle already has come back with row 0 and are not re-indexed.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass

from services.contract.added_items import (
    AddedItem,
    NewItem,
    assign_rows,
    check_embedding,
    validate_new_items,
)
from services.contract.errors import FailedPrecondition, Unavailable
from services.gateway import validate
from services.gateway.catalog import CatalogHolder, GatewayCatalog
from services.gateway.stages import Stages

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AddedItems:
    items: list[AddedItem]  # request order; row 0 = the bundle already has the id
    bundle_version: str
    fallbacks: tuple[str, ...] = ()


async def add_items(
    stages: Stages, catalogs: CatalogHolder, items: Sequence[NewItem], max_items: int
) -> AddedItems:
    """The catalog is extended through `catalogs` (copy-on-write: requests in flight keep the
    snapshot they started with)."""
    for item in items:
        validate.check_id("items.item_id", item.item_id)
    validate_new_items(items, max_items=max_items)
    check_indexable(catalogs.current, items)  # before anything is registered
    entries = await stages.features.add_items(items)  # durable from here on
    by_id = {item.item_id: item for item in items}
    new = [e for e in entries if e.row > 0]
    fallbacks: list[str] = []
    if new:
        try:
            await stages.retrieval.add_items(
                [dataclasses.replace(by_id[e.item.item_id], row=e.row) for e in new]
            )
        except Unavailable as exc:  # registered: retrieval's item sync indexes it later
            fallbacks.append(f"retrieval: {type(exc).__name__}")
    out = [
        dataclasses.replace(e, item=dataclasses.replace(e.item, embedding=None)) for e in entries
    ]
    catalog = extend(catalogs, [e for e in out if e.row > 0])
    return AddedItems(out, catalog.version, tuple(fallbacks))


def check_indexable(catalog: GatewayCatalog, items: Sequence[NewItem]) -> None:
    """What retrieval would refuse, refused before the feature service registers anything (a
    registered item that retrieval cannot index would stay registered, unindexed): a wrong
    embedding dimension (InvalidArgument), or text to encode with a bundle that has no content
    encoder (FailedPrecondition). Ids the bundle already has are not indexed: not checked."""
    for item in items:
        if catalog.in_base(item.item_id):
            continue
        if item.embedding is not None:
            if catalog.embedding_dim:
                check_embedding(item, catalog.embedding_dim)
        elif not catalog.content_encoder:
            raise FailedPrecondition(
                f"item {item.item_id[:40]!r}: bundle {catalog.version} has no content encoder: "
                f"pass each new item's embedding ({catalog.embedding_dim} floats), or serve a "
                "bundle trained with one"
            )


def sync_catalog(catalogs: CatalogHolder, entries: Sequence[AddedItem]) -> int:
    """Bring the held catalog up to the registry (every entry, ordinal order; the item
    sync's mirror, services.platform.item_sync): rows computed against this catalog's bundle as
    every replica computes them; only entries that are new or changed here are written
    (copy-on-write, as `extend`). -> how many."""
    changed: list[tuple[int, NewItem]] = []

    def change(catalog: GatewayCatalog) -> GatewayCatalog | None:
        changed[:] = _sync_changes(catalog, entries)
        return catalog.extended(changed) if changed else None

    catalogs.update(change)
    return len(changed)


def _sync_changes(
    catalog: GatewayCatalog, entries: Sequence[AddedItem]
) -> list[tuple[int, NewItem]]:
    rows = assign_rows([e.item for e in entries], catalog.base_rows, catalog.in_base)
    changed: list[tuple[int, NewItem]] = []
    for e in entries:
        row = rows.get(e.item.item_id)
        if row is None:
            continue
        item = e.item
        here = catalog.id_index.get(item.item_id, 0) == row
        if here and (str(catalog.titles[row]), catalog.item_tags[row]) == (
            item.title,
            tuple(item.tags),
        ):
            continue
        changed.append((row, dataclasses.replace(item, embedding=None)))
    return changed


def extend(catalogs: CatalogHolder, entries: Sequence[AddedItem]) -> GatewayCatalog:
    """Copy-on-write: requests in flight keep the catalog they started with. -> the new one."""
    if not entries:
        return catalogs.current
    return catalogs.update(lambda c: c.extended([(e.row, e.item) for e in entries]))
