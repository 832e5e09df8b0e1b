"""GatewayCatalog: popularity order and vectorised filters over item indices."""

from __future__ import annotations

import numpy as np

from services.common.types import FilterSpec, ItemInfo
from services.gateway.catalog import GatewayCatalog

UNKNOWN = ItemInfo("", 0, "", (), 0, 0)


def catalog_of(n: int) -> GatewayCatalog:
    """Item i has popularity n - i (item 1 most popular); every 1000th item is "Rare"."""
    infos = [UNKNOWN] + [
        ItemInfo(f"m{i}", i, f"Movie {i}", ("Rare",) if i % 1000 == 0 else ("Common",), 0, n - i)
        for i in range(1, n + 1)
    ]
    return GatewayCatalog.from_infos("v", infos, ("Common", "Rare"))


def test_popular_follows_popularity_and_skips_the_unknown_row():
    catalog = catalog_of(5)
    assert catalog.popular(10).tolist() == [1, 2, 3, 4, 5]
    assert catalog.popularity_scores(np.array([1, 5])).tolist() == [1.0, 0.0]


def test_popular_finds_rare_items_deep_in_a_large_catalog():
    catalog = catalog_of(5000)
    assert catalog.popular(4, FilterSpec(include_tags=("Rare",))).tolist() == [
        1000,
        2000,
        3000,
        4000,
    ]


def test_popular_applies_seen_and_excluded_items():
    catalog = catalog_of(6)
    filters = FilterSpec(exclude_seen=True, exclude_items=("m2",))
    assert catalog.popular(3, filters, seen=np.array([1, 3])).tolist() == [4, 5, 6]


def test_allowed_is_one_mask_over_the_candidates():
    catalog = catalog_of(3000)
    mask = catalog.allowed(np.array([0, 999, 1000, 2000]), FilterSpec(exclude_tags=("Rare",)))
    assert mask.tolist() == [False, True, False, False]


def test_ids_and_unknown_ids():
    catalog = catalog_of(3)
    assert catalog.index_of(["m3", "zzz"]).tolist() == [3, 0]
    assert len(catalog) == 3 and catalog.titles[2] == "Movie 2"
