"""The serving item table: the item feature inputs of the exported graphs, built from the bundle
with the training definition, extended by items added at runtime."""

from __future__ import annotations

import numpy as np
import pytest

from services.contract.errors import InvalidArgument
from services.contract.features import FeatureSpec
from services.contract.item_table import FEATURE_INPUTS, ItemTable
from services.contract.model_inputs import UserInputs
from services.contract.types import UserState


@pytest.fixture(scope="module")
def table(bundle) -> ItemTable:
    return ItemTable.from_bundle(bundle)


def test_bundle_table_equals_the_training_features(bundle, table, ml_catalog) -> None:
    """Same rows as training's EncodedCatalog: tags multi-hot, encoded item attributes, and
    item_embeddings.npy as the vectors."""
    ids = np.load(bundle.path("item_ids.npy"), allow_pickle=False)
    assert np.array_equal(ml_catalog.items.ids, ids)
    rows = np.arange(table.n_base_rows)
    np.testing.assert_array_equal(table.tags_of(rows), ml_catalog.item_tags)
    np.testing.assert_array_equal(table.attrs_of(rows), ml_catalog.item_attrs)
    vectors = np.load(bundle.path("item_embeddings.npy"), allow_pickle=False)
    np.testing.assert_array_equal(table.vectors_of(rows), vectors)
    assert table.tags_of(rows).dtype == np.float32 and table.attrs_of(rows).dtype == np.int64


def test_added_rows_have_their_own_tags_unknown_attributes_and_vector(bundle, table) -> None:
    n, tags = table.n_base_rows, bundle.feature_spec.tags
    vectors = np.arange(2 * table.dim, dtype=np.float32).reshape(2, -1)
    grown = table.with_added([n, n + 2], [(tags[1], "not-a-bundle-tag"), ()], vectors)
    assert table.n_rows == n and grown.n_rows == n + 3  # the original is unchanged
    rows = np.array([[3, n, n + 1, n + 2, 0]])
    got_tags = grown.tags_of(rows)
    assert got_tags.shape == (1, 5, len(tags))
    np.testing.assert_array_equal(got_tags[0, 0], table.tags_of(np.array([3]))[0])
    assert got_tags[0, 1].tolist() == [1.0 if t == tags[1] else 0.0 for t in tags]
    assert not got_tags[0, 2:].any()  # an empty row, a tagless item, row 0
    assert not grown.attrs_of(rows)[0, 1:].any()
    np.testing.assert_array_equal(grown.vectors_of(rows)[0, [1, 3]], vectors)
    assert not grown.vectors_of(rows)[0, 2].any()
    again = grown.with_added([n], [(tags[0],)], vectors[1:])  # re-added: overwritten
    assert again.tags_of(np.array([n]))[0, 0] == 1.0 and again.n_rows == n + 3
    with pytest.raises(ValueError, match="bundle row"):
        table.with_added([n - 1], [()], vectors[:1])
    feeds = grown.feeds(FEATURE_INPUTS, history=rows[:, :3], items=rows)
    assert {k: v.shape for k, v in feeds.items()} == {
        "history_tags": (1, 3, len(tags)),
        "history_attrs": (1, 3, table.attrs.shape[1]),
        "item_tags": (1, 5, len(tags)),
        "item_attrs": (1, 5, table.attrs.shape[1]),
        "item_vectors": (1, 5, table.dim),
    }


def test_user_inputs_gather_history_features_and_accept_added_rows(bundle, table) -> None:
    inputs = UserInputs.from_bundle(bundle, n_item_rows=table.n_base_rows)
    n = table.n_base_rows
    grown = table.with_added([n], [()], np.zeros((1, table.dim), np.float32))
    user = UserState("u", False, 1, np.zeros(0, np.int64), np.array([n, 5], np.int64))
    with pytest.raises(InvalidArgument, match="out of range"):
        inputs.feeds(user)  # no table: the bundle's rows only
    feeds = inputs.feeds(user, grown, ("history_tags", "history_attrs"))
    h = bundle.feature_spec.history_len
    assert feeds["history"].shape == (1, h) and feeds["history_tags"].shape[:2] == (1, h)
    np.testing.assert_array_equal(feeds["history_tags"][0, 1], table.tags_of(np.array([5]))[0])
    assert set(inputs.feeds(user, grown)) == {"user_index", "profile", "history"}


def test_a_dataset_without_tags_or_attributes_has_empty_feature_columns() -> None:
    spec = FeatureSpec(history_len=4, tags=(), user_fields=(), item_fields=())
    table = ItemTable(np.zeros((3, 0)), np.zeros((3, 0), np.int64), np.ones((3, 2), np.float32),
                      spec)  # fmt: skip
    grown = table.with_added([3], [("x",)], np.ones((1, 2), np.float32))
    feeds = grown.feeds(FEATURE_INPUTS, history=np.array([[3, 1]]), items=np.array([[2, 3]]))
    assert feeds["history_tags"].shape == (1, 2, 0) and feeds["item_attrs"].shape == (1, 2, 0)
    assert feeds["item_vectors"].shape == (1, 2, 2)
