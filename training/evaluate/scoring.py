"""Score any system's answers with the same code: top-K lists against a split's test events,
rating predictions against its test ratings, P(positive) against rating >= 4."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from training.evaluate import metrics as M

TOPK_CUTOFFS = {
    "recall": (10, 20, 50, 100),
    "ndcg": (10, 20, 100),
    "precision": (10,),
    "hit_rate": (10,),
    "mrr": (10,),
}
CURVE_K = 100
POSITIVE_RATING = 4.0


def relevant_items(train: pd.DataFrame, test: pd.DataFrame) -> dict[str, set[str]]:
    """{user: test items the user did not already have in train} (users with none dropped)."""
    seen = train.groupby("user_id")["item_id"].apply(set).to_dict()
    out = {}
    for user, items in test.groupby("user_id")["item_id"]:
        rel = set(items) - seen.get(user, set())
        if rel:
            out[str(user)] = rel
    return out


def catalog_facts(
    train: pd.DataFrame, items: pd.DataFrame
) -> tuple[int, dict[str, tuple[str, ...]], dict[str, float]]:
    """-> (catalog size, item -> tags, item -> share of training users who had it)."""
    tags = {str(i): tuple(t) for i, t in zip(items["item_id"], items["tags"], strict=True)}
    n_users = train["user_id"].nunique()
    share = (train.groupby("item_id")["user_id"].nunique() / max(n_users, 1)).to_dict()
    return len(items), tags, {str(k): float(v) for k, v in share.items()}


def score_topk(
    recommended: Mapping[str, Sequence[str]],
    relevant: Mapping[str, set[str]],
    train: pd.DataFrame,
    items: pd.DataFrame,
) -> dict[str, float]:
    """Every top-K metric of the report for one system's lists."""
    curves = M.ranking_curves(recommended, relevant, CURVE_K)
    row = {
        f"{name}@{k}": float(curves[name][k - 1])
        for name, cutoffs in TOPK_CUTOFFS.items()
        for k in cutoffs
    }
    n_items, tags, share = catalog_facts(train, items)
    row["coverage@10"] = M.catalog_coverage_at_k(recommended, 10, n_items)
    row["coverage@100"] = M.catalog_coverage_at_k(recommended, 100, n_items)
    row["diversity@10"] = M.intra_list_diversity_at_k(recommended, 10, tags)
    row["novelty@10"] = M.novelty_at_k(recommended, 10, share)
    row["n_users"] = float(len(relevant))
    return row


def topk_curves(
    recommended: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]]
) -> dict[str, list[float]]:
    curves = M.ranking_curves(recommended, relevant, CURVE_K)
    return {"recall": curves["recall"].tolist(), "ndcg": curves["ndcg"].tolist()}


def score_ratings(truth: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    ok = np.isfinite(predicted)
    return {
        "rmse": M.rmse(truth[ok], predicted[ok]),
        "mae": M.mae(truth[ok], predicted[ok]),
        "n": float(ok.sum()),
        "n_missing": float((~ok).sum()),
    }


def score_probabilities(ratings: np.ndarray, p_positive: np.ndarray) -> dict[str, Any]:
    labels = np.asarray(ratings) >= POSITIVE_RATING
    cal = M.calibration_curve(labels, p_positive, n_bins=10)
    return {
        "auc": M.auc(labels, p_positive),
        "log_loss": M.log_loss(labels, p_positive),
        "ece": cal.ece,
        "positive_rate": float(labels.mean()),
        "calibration": {
            "predicted": cal.predicted.tolist(),
            "observed": cal.observed.tolist(),
            "count": cal.count.tolist(),
        },
    }


def split_users(train: pd.DataFrame, users: Sequence[str], threshold: int) -> dict[str, list[str]]:
    """cold: users with at most `threshold` training events; warm: the rest."""
    counts = train.groupby("user_id").size()
    cold = [u for u in users if counts.get(u, 0) <= threshold]
    warm = [u for u in users if counts.get(u, 0) > threshold]
    return {"cold": cold, "warm": warm}


def activity_buckets(train: pd.DataFrame, test: pd.DataFrame, edges: Sequence[int]) -> np.ndarray:
    """Label of each test row by its user's number of training ratings: '<a', 'a-b', '>=z'."""
    counts = test["user_id"].map(train.groupby("user_id").size()).fillna(0).to_numpy()
    labels = [f"<{edges[0]}"] + [f"{a}-{b - 1}" for a, b in itertools.pairwise(edges)]
    labels.append(f">={edges[-1]}")
    return np.asarray(labels, dtype=object)[np.searchsorted(edges, counts, side="right")]
