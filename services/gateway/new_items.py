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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from services.common.added_items import AddedItem, NewItem, validate_new_items
from services.common.errors import InvalidArgument, Unavailable
from services.gateway import validate

if TYPE_CHECKING:
    from services.gateway.pipeline import Pipeline


@dataclass(frozen=True)
class AddedItems:
    items: list[AddedItem]  # request order; row 0 = the bundle already has the id
    bundle_version: str
    fallbacks: tuple[str, ...] = ()


async def add_items(pipeline: Pipeline, items: Sequence[NewItem]) -> AddedItems:
    for item in items:
        validate.check_id("items.item_id", item.item_id)
    validate_new_items(items, max_items=pipeline.limits.max_batch)
    for item in items:  # before anything is registered (retrieval checks the dimension)
        if item.embedding is not None and not np.isfinite(item.embedding).all():
            raise InvalidArgument(f"item {item.item_id[:40]!r}: embedding is not finite")
    stages = pipeline.stages
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
                e.item, proxy_row=proxies.get(e.item.item_id, e.item.proxy_row)
            ),
        )
        for e in entries
    ]
    extend(pipeline, [e for e in out if e.row > 0])
    return AddedItems(out, pipeline.catalog.version, tuple(fallbacks))


def extend(pipeline: Pipeline, entries: Sequence[AddedItem]) -> None:
    """Copy-on-write: requests in flight keep the catalog they started with."""
    if entries:
        pipeline.catalog = pipeline.catalog.extended([(e.row, e.item) for e in entries])


def _with_proxy(entry: AddedItem, proxy: int | None) -> AddedItem:
    if proxy is None:
        return entry
    return dataclasses.replace(entry, item=dataclasses.replace(entry.item, proxy_row=proxy))
