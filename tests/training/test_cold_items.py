"""Cold-item evaluation (training.evaluate.cold_items) on a slice of MovieLens, tiny preset.

The slice (the first 300 users, 2 training epochs, projection fitted on the 200 most popular
warm items) keeps the test near 30 s on 2 cores. Content retrieval beating random order among
the cold items is a wide margin even there (full tiny run: recall@20 0.33 vs 0.13), so it is
asserted; the rest are deterministic properties of the protocol.
"""

from __future__ import annotations

import numpy as np
import pytest

from training.data import InteractionData
from training.evaluate.cold_items import SYSTEMS, cold_rows, evaluate_cold_items
from training.evaluate.cold_ranking import ARMS
from training.evaluate.report_cold import cold_items_section
from training.evaluate.splits import topk_split


@pytest.fixture(scope="module")
def cold_result(movielens: InteractionData, ml_catalog) -> tuple[dict, int]:
    users = set(sorted(movielens.events["user_id"].astype(str).unique())[:300])
    events = movielens.events[movielens.events["user_id"].astype(str).isin(users)]
    split = topk_split(events)
    cold = set(ml_catalog.items.ids[cold_rows(ml_catalog.n_items, 0.1, 0) - 1].tolist())
    on_cold = int(split.train["item_id"].astype(str).isin(cold).sum())
    result = evaluate_cold_items(
        split.train, split.test, movielens, seed=0, tiny=True, max_fit_items=200
    )
    return result, on_cold


def test_cold_rows_are_seeded_and_exclude_padding() -> None:
    rows = cold_rows(1683, 0.1, seed=0)
    assert len(rows) == 168 and rows.min() >= 1 and rows.max() <= 1682
    np.testing.assert_array_equal(rows, cold_rows(1683, 0.1, seed=0))
    assert not np.array_equal(rows, cold_rows(1683, 0.1, seed=1))


def test_content_beats_random_on_cold_items(cold_result) -> None:
    result, on_cold = cold_result
    assert result["n_cold_items"] == 168
    assert result["n_train_removed"] == on_cold > 0  # every training event on a cold item
    assert result["n_users"] > 50 and result["n_test_interactions"] >= result["n_users"]
    for part in ("cold_only", "all_items"):
        assert set(result[part]) == set(SYSTEMS)
        for metrics in result[part].values():
            for name, value in metrics.items():
                assert 0.0 <= value <= (100.0 if name.startswith("cold_in") else 1.0)
    cold_only = result["cold_only"]
    assert cold_only["content"]["recall@20"] > cold_only["random"]["recall@20"] + 0.05
    assert cold_only["upper_bound"]["recall@20"] > cold_only["random"]["recall@20"]
    all_items = result["all_items"]
    assert all_items["content"]["recall@100"] > all_items["random"]["recall@100"]
    proj = result["projection"]
    assert proj["heldout"]["recall@10"] > proj["heldout_shuffled_pairing"]["recall@10"]


def test_report_section_lists_every_system(cold_result) -> None:
    lines = "\n".join(cold_items_section(cold_result[0]))
    assert "Cold items" in lines and "upper bound" in lines and "random order" in lines
    assert "Not run" in "\n".join(cold_items_section(None))


def test_ranking_compares_proxy_and_own_features(cold_result) -> None:
    """The ranker part (training.evaluate.cold_ranking): every arm scored, metrics in [0, 1],
    warm items scored the same in every arm, the cold items not."""
    ranking = cold_result[0]["ranking"]
    assert set(ranking["arms"]) == set(ARMS)
    assert ranking["n_users"] == cold_result[0]["n_users"] and ranking["n_warm_users"] > 0
    assert ranking["warm_scores_identical"] is True
    for arm in ARMS:
        parts = ranking["arms"][arm]
        assert set(parts["cold_only"]) == {"auc", "recall@20", "ndcg@10"}
        assert set(parts["all_items"]) == {
            "cold_auc", "cold_recall@100", "cold_in_top100", "warm_recall@20", "warm_ndcg@10",
        }  # fmt: skip
        assert parts["warm_only"] == ranking["arms"]["proxy"]["warm_only"]  # warm: unchanged
        for part in parts.values():
            for name, value in part.items():
                assert 0.0 <= value <= (100.0 if name.startswith("cold_in") else 1.0), (arm, name)
    proxy, own = ranking["arms"]["proxy"], ranking["arms"]["own_features"]
    assert proxy["cold_only"] != own["cold_only"]
    assert proxy["all_items"]["cold_auc"] != own["all_items"]["cold_auc"]
    for arm in ARMS[1:]:
        for d in ranking["versus_proxy"][arm].values():
            assert d["ci95"][0] <= d["delta"] <= d["ci95"][1]
            assert d["better"] + d["equal"] + d["worse"] == d["n_users"] > 0
    section = "\n".join(cold_items_section(cold_result[0]))
    assert "proxy" in section and "own features" in section
