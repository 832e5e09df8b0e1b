"""training.evaluate.metrics: each metric against a case computed by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from training.evaluate import metrics as M

# user a: relevant {1, 3}; list [1, 2, 3, 4] -> hits at ranks 1 and 3.
# user b: relevant {9};    list [5, 6, 7, 8] -> no hit.
REC = {"a": [1, 2, 3, 4], "b": [5, 6, 7, 8]}
REL = {"a": {1, 3}, "b": {9}}


def test_recall_at_k():
    assert M.recall_at_k(REC, REL, 2) == pytest.approx((1 / 2 + 0) / 2)
    assert M.recall_at_k(REC, REL, 3) == pytest.approx((2 / 2 + 0) / 2)


def test_precision_at_k_divides_by_k():
    assert M.precision_at_k(REC, REL, 3) == pytest.approx((2 / 3 + 0) / 2)
    assert M.precision_at_k({"a": [1]}, {"a": {1}}, 4) == pytest.approx(1 / 4)


def test_ndcg_at_k_ideal_cut_at_min_k_and_relevant():
    dcg = 1 / math.log2(2) + 1 / math.log2(4)
    ideal = 1 / math.log2(2) + 1 / math.log2(3)
    assert M.ndcg_at_k(REC, REL, 3) == pytest.approx((dcg / ideal + 0) / 2)
    # k = 1: ideal DCG has one slot even though user a has two relevant items.
    assert M.ndcg_at_k(REC, REL, 1) == pytest.approx((1.0 + 0) / 2)


def test_ndcg_perfect_list_is_one():
    assert M.ndcg_at_k({"u": [3, 1, 7]}, {"u": {1, 3}}, 3) == pytest.approx(1.0)


def test_hit_rate_and_mrr():
    assert M.hit_rate_at_k(REC, REL, 4) == pytest.approx(0.5)
    assert M.mrr_at_k({"a": [2, 3], "b": [9]}, REL, 2) == pytest.approx((1 / 2 + 1) / 2)
    assert M.mrr_at_k({"a": [2, 4, 1]}, {"a": {1}}, 2) == 0.0


def test_user_without_answer_scores_zero_and_users_without_relevant_are_ignored():
    assert M.recall_at_k({"a": [1]}, {"a": {1}, "b": {2}, "c": set()}, 1) == pytest.approx(0.5)


def test_curves_match_pointwise_metrics():
    curves = M.ranking_curves(REC, REL, 4)
    for k in range(1, 5):
        assert curves["recall"][k - 1] == pytest.approx(M.recall_at_k(REC, REL, k))
        assert curves["precision"][k - 1] == pytest.approx(M.precision_at_k(REC, REL, k))
        assert curves["ndcg"][k - 1] == pytest.approx(M.ndcg_at_k(REC, REL, k))
        assert curves["hit_rate"][k - 1] == pytest.approx(M.hit_rate_at_k(REC, REL, k))
        assert curves["mrr"][k - 1] == pytest.approx(M.mrr_at_k(REC, REL, k))


def test_catalog_coverage():
    assert M.catalog_coverage_at_k({"a": [1, 2, 3], "b": [2, 4]}, 2, 10) == pytest.approx(3 / 10)


def test_intra_list_diversity():
    tags = {1: ("Comedy",), 2: ("Comedy",), 3: ("Drama",), 4: ("Comedy", "Drama")}
    # pairs of [1, 2, 3]: (1,2) sim 1, (1,3) 0, (2,3) 0 -> mean distance 2/3
    assert M.intra_list_diversity_at_k({"u": [1, 2, 3]}, 3, tags) == pytest.approx(2 / 3)
    # [1, 4]: cosine 1/sqrt(2)
    assert M.intra_list_diversity_at_k({"u": [1, 4]}, 2, tags) == pytest.approx(1 - 2**-0.5)


def test_novelty_is_mean_self_information():
    share = {1: 0.5, 2: 0.25}
    assert M.novelty_at_k({"u": [1, 2]}, 2, share) == pytest.approx((1 + 2) / 2)
    assert M.novelty_at_k({"u": [3]}, 1, share) == pytest.approx(2.0)  # unseen = rarest


def test_rmse_and_mae():
    assert M.rmse(np.array([1, 2, 3]), np.array([2, 2, 5])) == pytest.approx(math.sqrt(5 / 3))
    assert M.mae(np.array([1, 2, 3]), np.array([2, 2, 5])) == pytest.approx(1.0)


def test_auc_counts_ties_as_half():
    labels = np.array([1, 0, 1, 0])
    # positive/negative pairs: (0.8 > 0.3), (0.8 > 0.5), (0.5 = 0.5) tie, (0.5 > 0.3) -> 3.5 / 4
    assert M.auc(labels, np.array([0.8, 0.5, 0.5, 0.3])) == pytest.approx(3.5 / 4)
    assert math.isnan(M.auc(np.array([1, 1]), np.array([0.1, 0.2])))


def test_log_loss():
    expected = -(math.log(0.8) + math.log(0.6)) / 2
    assert M.log_loss(np.array([1, 0]), np.array([0.8, 0.4])) == pytest.approx(expected)


def test_calibration_curve_bins_and_ece():
    labels = np.array([0, 0, 1, 1, 1])
    probs = np.array([0.05, 0.15, 0.85, 0.95, 0.9])
    cal = M.calibration_curve(labels, probs, n_bins=2)
    assert cal.count.tolist() == [2, 3]
    assert cal.predicted.tolist() == pytest.approx([0.1, 0.9])
    assert cal.observed.tolist() == pytest.approx([0.0, 1.0])
    assert cal.ece == pytest.approx((2 * 0.1 + 3 * 0.1) / 5)


def test_average_ranks_share_the_mean_rank_on_ties() -> None:
    from training.evaluate.metrics import average_ranks

    assert average_ranks(np.array([0.3, 0.1, 0.3, 0.2])).tolist() == [3.5, 1.0, 3.5, 2.0]
