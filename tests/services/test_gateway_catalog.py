"""GatewayCatalog: popularity order and vectorised filters over item indices."""

from __future__ import annotations

import numpy as np

from services.contract.types import FilterSpec, ItemInfo
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


def _items_the_old_way(bundle) -> list[ItemInfo]:
    """The reference: ItemCatalog.from_bundle's former per-row loop over items.parquet."""
    import pyarrow.parquet as pq

    n_rows = len(np.load(bundle.path("item_ids.npy"), allow_pickle=False)) + 1  # + row 0
    table = pq.read_table(bundle.path("items.parquet")).to_pydict()
    infos = [UNKNOWN] * n_rows
    for item_id, index, title, tags, year, pop in zip(
        table["item_id"], table["item_index"], table["title"], table["tags"],
        table["year"], table["popularity"], strict=True,
    ):  # fmt: skip
        infos[int(index)] = ItemInfo(
            str(item_id), int(index), str(title or ""), tuple(tags or ()), int(year or 0),
            int(pop or 0),
        )  # fmt: skip
    return infos


def test_columnar_loading_matches_the_row_by_row_catalog(tiny_bundle):
    from services.contract.bundle import Bundle
    from services.contract.catalog import ItemCatalog

    bundle = Bundle.load(tiny_bundle)
    reference = _items_the_old_way(bundle)
    items = ItemCatalog.from_bundle(bundle)
    assert items.by_indices(range(len(items))) == reference
    np.testing.assert_array_equal(items.popularity, [i.popularity for i in reference])
    new = GatewayCatalog.from_bundle(bundle)
    old = GatewayCatalog.from_infos(bundle.version, reference, bundle.feature_spec.tags)
    for name in ("ids", "titles", "tag_matrix", "popularity", "by_popularity"):
        np.testing.assert_array_equal(getattr(new, name), getattr(old, name), err_msg=name)
        assert getattr(new, name).dtype == getattr(old, name).dtype, name
    assert new.item_tags == old.item_tags and new.tag_names == old.tag_names
    assert new.id_index == old.id_index and new.version == old.version


def test_extended_rows_match_a_catalog_built_whole():
    """Added items (a gap row left empty, one re-added with other tags) give the same tag
    matrix, ids and popularity order as computing them over every row."""
    from services.contract.added_items import NewItem
    from services.contract.catalog import tag_masks

    base = GatewayCatalog.from_infos(
        "v", [ItemInfo("", 0, "", (), 0, 0)] + [
            ItemInfo(f"i{r}", r, f"t{r}", ("a",) if r % 2 else ("b",), 0, 10 - r)
            for r in range(1, 6)
        ], ("a", "b"),
    )  # fmt: skip
    first = base.extended([(6, NewItem("n6", "N6", ("b",)))])
    grown = first.extended(
        [(8, NewItem("n8", "N8", ("a", "b", "zz"))), (6, NewItem("n6", "N6", ("a",)))]
    )
    whole = tag_masks(grown.tag_names, grown.item_tags).T
    np.testing.assert_array_equal(grown.tag_matrix, whole)
    # "zz", first seen on an added item, joins the vocabulary: a filter on it finds n8 only.
    assert grown.tag_names == ("a", "b", "zz")
    assert grown.tag_matrix.shape == (9, 3) and not grown.tag_matrix[7].any()
    assert not grown.unknown_tags(["zz"]) and base.unknown_tags(["zz"]) == ["zz"]
    zz = grown.allowed(np.arange(1, 9), FilterSpec(include_tags=("zz",)))
    assert np.arange(1, 9)[zz].tolist() == [8]
    assert grown.by_popularity.tolist() == [1, 2, 3, 4, 5, 6, 8]
    assert (grown.id_index["n6"], grown.id_index["n8"]) == (6, 8)
    assert grown.ids[6:].tolist() == ["n6", "", "n8"]  # the gap row stays empty
