"""Offline metrics: pure functions, one signature per family (after Microsoft Recommenders'
python_evaluation, with types).

Top-K accuracy:   metric(recommended, relevant, k) -> float
    recommended: {user: [item, ...] best first}; relevant: {user: {item, ...}} (held-out items).
    Averaged over the users of `relevant` that have at least one relevant item; a user missing
    from `recommended` scores 0 (a system that answers nothing for a user gets no credit).
Beyond accuracy:  metric(recommended, k, <catalog facts>) -> float, over users in `recommended`.
Ratings:          metric(truth, predicted) -> float, aligned float arrays.
Probabilities:    metric(labels, probs) -> float, labels bool/0-1, probs in [0, 1].

Ids may be any hashable (external str ids or int rows), as long as both sides use the same.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

User = Hashable
Item = Hashable
Recommended = Mapping[User, Sequence[Item]]
Relevant = Mapping[User, Collection[Item]]


def hit_matrix(
    recommended: Recommended, relevant: Relevant, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """-> hits bool[U, k] (top-k slot j of user u is relevant; short lists padded with False)
    and n_relevant int[U], for the users of `relevant` with at least one relevant item."""
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    users = [u for u, rel in relevant.items() if len(rel) > 0]
    hits = np.zeros((len(users), k), dtype=bool)
    n_relevant = np.zeros(len(users), dtype=np.int64)
    for row, user in enumerate(users):
        rel = relevant[user]
        rel = rel if isinstance(rel, set | frozenset) else set(rel)
        n_relevant[row] = len(rel)
        for j, item in enumerate(list(recommended.get(user, ()))[:k]):
            hits[row, j] = item in rel
    return hits, n_relevant


def _discounts(k: int) -> np.ndarray:
    return 1.0 / np.log2(np.arange(2, k + 2))


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else float("nan")


def recall_at_k(recommended: Recommended, relevant: Relevant, k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / |relevant|."""
    hits, n_rel = hit_matrix(recommended, relevant, k)
    return _mean(hits.sum(axis=1) / np.maximum(n_rel, 1))


def precision_at_k(recommended: Recommended, relevant: Relevant, k: int) -> float:
    """Mean over users of |top-k ∩ relevant| / k (a list shorter than k still divides by k)."""
    hits, _ = hit_matrix(recommended, relevant, k)
    return _mean(hits.sum(axis=1) / k)


def ndcg_at_k(recommended: Recommended, relevant: Relevant, k: int) -> float:
    """Binary-relevance NDCG: DCG = sum_j hit_j / log2(j + 2); ideal DCG over min(k, |rel|)
    slots."""
    hits, n_rel = hit_matrix(recommended, relevant, k)
    disc = _discounts(k)
    ideal = np.cumsum(disc)[np.minimum(n_rel, k) - 1]
    return _mean((hits @ disc) / ideal)


def hit_rate_at_k(recommended: Recommended, relevant: Relevant, k: int) -> float:
    """Share of users with at least one relevant item in the top k."""
    hits, _ = hit_matrix(recommended, relevant, k)
    return _mean(hits.any(axis=1).astype(np.float64))


def mrr_at_k(recommended: Recommended, relevant: Relevant, k: int) -> float:
    """Mean reciprocal rank of the first relevant item within the top k (0 when none)."""
    hits, _ = hit_matrix(recommended, relevant, k)
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, np.inf)
    return _mean(1.0 / first)


def ranking_curves(recommended: Recommended, relevant: Relevant, k: int) -> dict[str, np.ndarray]:
    """recall, precision, ndcg, hit_rate, mrr for every cutoff 1..k at once: float[k] each
    (curve[j] equals the @ (j + 1) metric above)."""
    hits, n_rel = hit_matrix(recommended, relevant, k)
    if hits.shape[0] == 0:
        return {m: np.full(k, np.nan) for m in ("recall", "precision", "ndcg", "hit_rate", "mrr")}
    cum_hits = np.cumsum(hits, axis=1)  # [U, k]
    cutoffs = np.arange(1, k + 1)
    disc = _discounts(k)
    dcg = np.cumsum(hits * disc, axis=1)
    ideal_prefix = np.cumsum(disc)
    ideal = ideal_prefix[np.minimum(n_rel[:, None], cutoffs[None, :]) - 1]
    first = np.where(hits.any(axis=1), hits.argmax(axis=1) + 1, k + 1)
    rr = np.where(first[:, None] <= cutoffs[None, :], 1.0 / first[:, None], 0.0)
    return {
        "recall": (cum_hits / np.maximum(n_rel, 1)[:, None]).mean(axis=0),
        "precision": (cum_hits / cutoffs[None, :]).mean(axis=0),
        "ndcg": (dcg / ideal).mean(axis=0),
        "hit_rate": (cum_hits > 0).mean(axis=0),
        "mrr": rr.mean(axis=0),
    }


def catalog_coverage_at_k(recommended: Recommended, k: int, n_items: int) -> float:
    """Distinct items in all top-k lists / catalog size."""
    shown = {item for items in recommended.values() for item in list(items)[:k]}
    return len(shown) / n_items


def intra_list_diversity_at_k(
    recommended: Recommended, k: int, item_tags: Mapping[Item, Collection[str]]
) -> float:
    """Mean over users of the mean pairwise cosine distance between the multi-hot tag vectors of
    the top-k items (1 = no tag in common, 0 = same tags). Items without tags are skipped;
    lists with fewer than two tagged items are left out."""
    vocab = {t: i for i, t in enumerate(sorted({t for ts in item_tags.values() for t in ts}))}
    scores = []
    for items in recommended.values():
        rows = [item_tags.get(i, ()) for i in list(items)[:k]]
        rows = [r for r in rows if r]
        if len(rows) < 2:
            continue
        x = np.zeros((len(rows), len(vocab)))
        for j, tags in enumerate(rows):
            x[j, [vocab[t] for t in tags]] = 1.0
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        sim = x @ x.T
        n = len(rows)
        scores.append(1.0 - (sim.sum() - n) / (n * (n - 1)))
    return _mean(np.asarray(scores))


def novelty_at_k(recommended: Recommended, k: int, item_user_share: Mapping[Item, float]) -> float:
    """Mean self-information -log2(p(i)) in bits over all recommended slots, p(i) = share of
    training users who interacted with i. Items missing (or 0) count as the rarest share present."""
    floor = min((p for p in item_user_share.values() if p > 0), default=1.0)
    values = [
        -np.log2(max(item_user_share.get(i, floor), floor))
        for items in recommended.values()
        for i in list(items)[:k]
    ]
    return _mean(np.asarray(values))


def rmse(truth: np.ndarray, predicted: np.ndarray) -> float:
    diff = np.asarray(truth, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


def mae(truth: np.ndarray, predicted: np.ndarray) -> float:
    diff = np.asarray(truth, dtype=np.float64) - np.asarray(predicted, dtype=np.float64)
    return float(np.mean(np.abs(diff)))


def average_ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank (scipy's rankdata "average")."""
    x = np.asarray(values, dtype=np.float64)
    order = np.argsort(x, kind="mergesort")
    ordered = x[order]
    starts_group = np.r_[True, ordered[1:] != ordered[:-1]]
    starts = np.flatnonzero(starts_group)
    ends = np.r_[starts[1:], x.size]
    ranks = np.empty(x.size, dtype=np.float64)
    ranks[order] = ((starts + ends + 1) / 2.0)[np.cumsum(starts_group) - 1]
    return ranks


def auc(labels: np.ndarray, probs: np.ndarray) -> float:
    """ROC AUC by the rank-sum (Mann-Whitney U) statistic; ties count one half. NaN when only
    one class is present."""
    y = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = average_ranks(probs)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def log_loss(labels: np.ndarray, probs: np.ndarray, eps: float = 1e-7) -> float:
    """Mean binary cross-entropy in nats; probabilities clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    y = np.asarray(labels, dtype=np.float64)
    return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))


@dataclass(frozen=True)
class Calibration:
    """Per bin (equal width on [0, 1]): mean predicted probability, observed positive rate and
    count; empty bins are dropped. ece: count-weighted mean |observed - predicted|."""

    predicted: np.ndarray
    observed: np.ndarray
    count: np.ndarray
    ece: float


def calibration_curve(labels: np.ndarray, probs: np.ndarray, n_bins: int = 10) -> Calibration:
    y = np.asarray(labels, dtype=np.float64)
    p = np.asarray(probs, dtype=np.float64)
    bins = np.clip((p * n_bins).astype(np.int64), 0, n_bins - 1)
    count = np.bincount(bins, minlength=n_bins)
    sum_p = np.bincount(bins, weights=p, minlength=n_bins)
    sum_y = np.bincount(bins, weights=y, minlength=n_bins)
    keep = count > 0
    predicted, observed = sum_p[keep] / count[keep], sum_y[keep] / count[keep]
    ece = float(np.sum(count[keep] * np.abs(observed - predicted)) / max(count.sum(), 1))
    return Calibration(predicted, observed, count[keep], ece)
