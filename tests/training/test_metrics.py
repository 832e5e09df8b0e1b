"""Offline metric functions on hand-checked examples."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.metrics import auc, logloss, ndcg_at_k, recall_at_k, rmse


def test_recall_counts_relevant_items_in_the_top_k() -> None:
    ranked = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    relevant = [{2, 9}, {8}]
    assert recall_at_k(ranked, relevant, 2) == pytest.approx((0.5 + 0.0) / 2)
    assert recall_at_k(ranked, relevant, 4) == pytest.approx((0.5 + 1.0) / 2)


def test_ndcg_is_one_for_a_perfect_ranking_and_discounts_lower_positions() -> None:
    assert ndcg_at_k(np.array([[3, 1, 2]]), [{3, 1}], 3) == pytest.approx(1.0)
    expected = (1 / math.log2(3)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(np.array([[2, 3, 4]]), [{3, 9}], 3) == pytest.approx(expected)


def test_auc_counts_correctly_ordered_pairs_with_ties_as_half() -> None:
    labels = np.array([1, 0, 1, 0])
    assert auc(labels, np.array([0.9, 0.1, 0.8, 0.2])) == pytest.approx(1.0)
    assert auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)
    assert auc(labels, np.array([0.9, 0.85, 0.1, 0.2])) == pytest.approx(0.5)


def test_logloss_and_rmse() -> None:
    assert logloss(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(math.log(2))
    assert rmse(np.array([1.0, 3.0]), np.array([2.0, 2.0])) == pytest.approx(1.0)
