"""Gateway AddItems: register durably, index, record proxies, extend the catalog.

    feature.AddItems   (durable; allocates ordinals, answers rows n + j)
      -> retrieval.AddItems (encode + index under those rows; answers proxies)
      -> feature.AddItems again with the proxies (idempotent upsert by id)
      -> this gateway's catalog extended copy-on-write (ids, titles, tags, proxies)

Retrieval unavailable: the items stay registered (acknowledged, durable) and the answer
says so in `fallbacks`; a retrieval replica that syncs from the registry indexes them later
(docs/new_items.md). Ids the bundle already has come back with row 0 and are not re-indexed.
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
from services.contract.errors import FailedPrecondition, RecserveError, Unavailable
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
    proxies: dict[str, int] = {}
    if new:
        try:
            indexed = await stages.retrieval.add_items(
                [dataclasses.replace(by_id[e.item.item_id], row=e.row) for e in new]
            )
            proxies = {a.item.item_id: a.item.proxy_row for a in indexed}
        except Unavailable as exc:
            fallbacks.append(f"retrieval: {type(exc).__name__}")
    if proxies:
        recorded = [
            dataclasses.replace(by_id[i], proxy_row=p, embedding=None) for i, p in proxies.items()
        ]
        try:
            await stages.features.add_items(recorded)
        except Unavailable as exc:  # retrieval re-derives proxies; only other gateways wait
            fallbacks.append(f"features: {type(exc).__name__}")
    out = [
        dataclasses.replace(
            e,
            item=dataclasses.replace(
                e.item, proxy_row=proxies.get(e.item.item_id, e.item.proxy_row), embedding=None
            ),
        )
        for e in entries
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
        if catalog.id_index.get(item.item_id, 0) == row and catalog.proxy is not None:
            here = (int(catalog.proxy[row]), str(catalog.titles[row]), catalog.item_tags[row])
            if here == (item.proxy_row, item.title, tuple(item.tags)):
                continue
        changed.append((row, dataclasses.replace(item, embedding=None)))
    return changed


def extend(catalogs: CatalogHolder, entries: Sequence[AddedItem]) -> GatewayCatalog:
    """Copy-on-write: requests in flight keep the catalog they started with. -> the new one."""
    if not entries:
        return catalogs.current
    return catalogs.update(lambda c: c.extended([(e.row, e.item) for e in entries]))


async def repair_proxies(
    stages: Stages, catalogs: CatalogHolder, entries: Sequence[AddedItem]
) -> int:
    """Registry entries without a proxy (added while retrieval was unreachable, or its answer
    was lost) are indexed now and their proxies recorded, so every gateway ranks them as
    their nearest trained item instead of row 0. Run by the item sync after the catalog is
    up to date; idempotent (retrieval AddItems by row, feature AddItems by id), so replicas
    repairing the same entry at once do no harm. -> how many were repaired. A backend still
    down raises (Unavailable): the sync round fails and is retried with backoff, the mirror
    still marked unapplied, so the repair is not forgotten once the pull has nothing new."""
    catalog = catalogs.current
    orphans = [
        dataclasses.replace(e.item, row=row)
        for e in entries
        if e.item.proxy_row == 0
        and not catalog.in_base(e.item.item_id)
        and (row := catalog.id_index.get(e.item.item_id, 0)) > 0
    ]
    if not orphans:
        return 0
    by_id = {item.item_id: item for item in orphans}
    try:
        indexed = await stages.retrieval.add_items(orphans)
    except Unavailable:
        raise
    except RecserveError as exc:  # refused for good (e.g. text, no encoder): retrying won't help
        log.warning("%d added items without a proxy: retrieval refused them: %s", len(orphans), exc)
        return 0
    recorded = [
        dataclasses.replace(by_id[a.item.item_id], proxy_row=a.item.proxy_row, embedding=None)
        for a in indexed
        if a.item.proxy_row > 0 and a.item.item_id in by_id
    ]
    if recorded:
        await stages.features.add_items(recorded)
        log.info("%d added items without a proxy indexed and given one", len(recorded))
        catalogs.update(lambda c: c.extended([(i.row, i) for i in recorded]))  # as extend
    return len(recorded)
