"""The manifest's metrics, measured on the validation events (nothing is fitted on them):
retrieval over every item for a sample of users, the ranker and the served rating."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from training.metrics import evaluate_ranker, evaluate_retrieval, evaluate_served_rating
from training.models import Ranker, TwoTower
from training.models.rating import ServedRanker
from training.steps.features import Features

# The manifest's retrieval metrics rank every item for each sampled validation user; this many
# (user, item) scores at most keeps that pass within memory at 1M items.
RETRIEVAL_EVAL_MAX_SCORES = 500_000_000


def evaluate(
    f: Features,
    two_tower: TwoTower,
    item_embeddings: np.ndarray,
    ranker: Ranker,
    served: ServedRanker,
    train: pd.DataFrame,
    *,
    has_rating_model: bool,
    like_threshold: float,
    repeat: bool,
    seed: int,
) -> dict[str, Any]:
    """-> {"retrieval": ..., "ranker": ..., "rating": ...} (the last two with a rating model);
    {} without validation events."""
    metrics: dict[str, Any] = {}
    if f.valid_ix is None:
        return metrics
    metrics["retrieval"] = evaluate_retrieval(
        two_tower.user_tower, item_embeddings, f.catalog, f.train_ix,
        sample_users(f.valid_ix, RETRIEVAL_EVAL_MAX_SCORES // f.catalog.n_items, seed),
        repeat=repeat,
    )  # fmt: skip
    if has_rating_model:
        mean = float(train["rating"].mean())
        metrics["ranker"] = evaluate_ranker(ranker, f.heldout, mean, like_threshold)
        metrics["rating"] = evaluate_served_rating(served, f.heldout)
    return metrics


def sample_users(events: pd.DataFrame, max_users: int, seed: int) -> pd.DataFrame:
    """The events of at most max_users users, drawn at random (all when there are fewer)."""
    users = events["user_index"].unique()
    if users.size <= max_users:
        return events
    keep = np.random.default_rng(seed).choice(users, size=max(1, max_users), replace=False)
    return events[events["user_index"].isin(keep)]
