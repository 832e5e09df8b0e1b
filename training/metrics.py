"""Offline metrics recorded in the manifest (pure functions) and the two evaluations using them.

Retrieval: per test user, rank all items except row 0 and the user's training items; the
relevant set is the user's held-out items. Ranking: every held-out event scored with the
history the feature service would have served at that moment.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from services.contract.features import sliding_histories, sliding_values
from training.encode import EncodedCatalog
from training.evaluate import metrics as M
from training.evaluate.metrics import auc, rmse
from training.evaluate.metrics import log_loss as logloss
from training.models import Ranker, UserTower
from training.models.train import (
    event_token_values,
    history_ages_before,
    history_events,
    latest_history_events,
)


def recall_at_k(ranked: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """ranked int[U, >=k] item rows, best first: mean of |top-k ∩ relevant| / |relevant|."""
    return M.recall_at_k(dict(enumerate(ranked.tolist())), dict(enumerate(relevant)), k)


def ndcg_at_k(ranked: np.ndarray, relevant: Sequence[set[int]], k: int) -> float:
    """Binary-relevance NDCG@k averaged over users (rows of `ranked`)."""
    return M.ndcg_at_k(dict(enumerate(ranked.tolist())), dict(enumerate(relevant)), k)


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
    return np.take_along_axis(top, order, axis=1)


@torch.no_grad()
def evaluate_retrieval(
    user_tower: UserTower,
    item_embeddings: np.ndarray,
    catalog: EncodedCatalog,
    train: pd.DataFrame,
    test: pd.DataFrame,
    k_recall: int = 20,
    k_ndcg: int = 10,
    repeat: bool = False,
) -> dict[str, float]:
    """train/test: indexed events sorted by (user, time). Also reports popularity and random
    baselines under the same exclusions. repeat (the dataset's behaviour.repeat): training
    items are neither excluded nor dropped from the relevant set (groceries are bought again)."""
    seen = train.groupby("user_index")["item_index"].apply(list).to_dict()
    held = test.groupby("user_index")["item_index"].apply(set).to_dict()
    users, relevant = [], []
    for user, items in held.items():
        past = seen.get(user, [])
        rel = items if repeat else items - set(past)
        if rel:
            users.append(user)
            relevant.append(rel)
    user_index = np.asarray(users, dtype=np.int64)
    # each user's state when asked: at their first held-out event
    now = np.zeros(catalog.n_users, dtype=np.float64)
    first = test.groupby("user_index")["timestamp"].min()
    now[first.index.to_numpy(np.int64)] = first.to_numpy(np.float64)
    state = {k: v[user_index] for k, v in latest_history_events(catalog, train, now).items()}
    user_tower.eval()
    queries = user_tower(
        torch.from_numpy(user_index),
        torch.from_numpy(catalog.user_profiles[user_index]),
        torch.from_numpy(state.pop("history")),
        **history_events(state),
    ).numpy()
    popularity = np.bincount(train["item_index"], minlength=catalog.n_items).astype(np.float64)
    exclude = np.zeros((len(users), catalog.n_items), dtype=bool)
    exclude[:, 0] = True
    for row, user in enumerate(users):
        exclude[row, [] if repeat else seen.get(user, [])] = True
    k = max(k_recall, k_ndcg)
    model_scores = np.where(exclude, -np.inf, queries @ item_embeddings.T)
    popular_scores = np.where(exclude, -np.inf, np.broadcast_to(popularity, exclude.shape))
    ranked, popular = _top_k(model_scores, k), _top_k(popular_scores, k)
    n_candidates = (~exclude).sum(axis=1)
    return {
        f"recall_at_{k_recall}": recall_at_k(ranked, relevant, k_recall),
        f"ndcg_at_{k_ndcg}": ndcg_at_k(ranked, relevant, k_ndcg),
        f"popularity_recall_at_{k_recall}": recall_at_k(popular, relevant, k_recall),
        f"popularity_ndcg_at_{k_ndcg}": ndcg_at_k(popular, relevant, k_ndcg),
        f"random_recall_at_{k_recall}": float(np.mean(k_recall / n_candidates)),
        "n_users": len(users),
    }


def heldout_ranking_inputs(
    catalog: EncodedCatalog, train: pd.DataFrame, test: pd.DataFrame
) -> dict[str, np.ndarray]:
    """Held-out events with the history before each (over train + test, sorted by user/time)."""
    full = pd.concat([train.assign(_test=False), test.assign(_test=True)])
    full = full.sort_values(["user_index", "timestamp", "_test"], kind="stable")
    users = full["user_index"].to_numpy(np.int64)
    rows = full["_test"].to_numpy(bool)
    at = np.flatnonzero(rows)  # the test rows only: train + test x H would not fit at scale
    items = full["item_index"].to_numpy(np.int64)
    times = full["timestamp"].to_numpy(np.int64)
    tokens = event_token_values(full)
    length = catalog.spec.history_len
    return {
        "user_index": users[rows],
        "profile": catalog.user_profiles[users[rows]],
        "history": sliding_histories(users, items, length, at),
        "history_age": history_ages_before(users, times, length, at, at),
        "history_kind": sliding_values(users, tokens, length, at),
        "items": full["item_index"].to_numpy(np.int64)[rows][:, None],
        "ratings": full["rating"].to_numpy(np.float32)[rows],
    }


@torch.no_grad()
def evaluate_ranker(
    ranker: Ranker,
    heldout: dict[str, np.ndarray],
    train_mean_rating: float,
    threshold: float = 4.0,
    batch_size: int = 4096,
) -> dict[str, float]:
    """On held-out (rated) events: AUC/logloss of the exported P(positive) (the joint
    P(interact) x P(rating >= threshold | interact)) and of the conditional factor alone
    (`*_given_interaction`: every held-out event was interacted with, so this is the
    probability these labels ask about), RMSE of the rating, and the RMSE of always predicting
    the training mean rating, as a baseline."""
    ranker.eval()
    names = ("user_index", "profile", "history", "items")
    probs, likes, preds = [], [], []
    for start in range(0, len(heldout["items"]), batch_size):
        batch = (torch.from_numpy(heldout[n][start : start + batch_size]) for n in names)
        events = history_events({k: v[start : start + batch_size] for k, v in heldout.items()})
        interact, like, rating = ranker.logits(*batch, **events)
        probs.append((torch.sigmoid(interact) * torch.sigmoid(like))[:, 0].numpy())
        likes.append(torch.sigmoid(like)[:, 0].numpy())
        preds.append(rating[:, 0].numpy())
    prob, like_prob, pred = np.concatenate(probs), np.concatenate(likes), np.concatenate(preds)
    ratings = heldout["ratings"]
    labels = ratings >= threshold
    return {
        "auc": auc(labels, prob),
        "logloss": logloss(labels, prob),
        "auc_given_interaction": auc(labels, like_prob),
        "logloss_given_interaction": logloss(labels, like_prob),
        "rmse": rmse(ratings, pred),
        "rmse_train_mean_baseline": rmse(ratings, np.full_like(ratings, train_mean_rating)),
        "positive_rate": float(labels.mean()),
        "n_events": len(ratings),
    }


@torch.no_grad()
def evaluate_served_rating(
    served: torch.nn.Module,
    heldout: dict[str, np.ndarray],
    threshold: float = 4.0,
    batch_size: int = 4096,
) -> dict[str, float]:
    """The exported `rating` and `p_positive` (ranker.onnx = training.models.rating.ServedRanker)
    on held-out rated events: RMSE/MAE of the rating; AUC, log loss and ECE of P(rating >= 4)."""
    served.eval()
    names = ("user_index", "profile", "history", "items")
    probs, preds = [], []
    for start in range(0, len(heldout["items"]), batch_size):
        batch = (torch.from_numpy(heldout[n][start : start + batch_size]) for n in names)
        events = history_events({k: v[start : start + batch_size] for k, v in heldout.items()})
        p_positive, rating, _ = served(*batch, **events)
        probs.append(p_positive[:, 0].numpy())
        preds.append(rating[:, 0].numpy())
    prob, pred = np.concatenate(probs), np.concatenate(preds)
    ratings = heldout["ratings"]
    labels = ratings >= threshold
    return {
        "rmse": rmse(ratings, pred),
        "mae": M.mae(ratings, pred),
        "auc": auc(labels, prob),
        "logloss": logloss(labels, prob),
        "ece": M.calibration_curve(labels, prob, n_bins=10).ece,
        "n_events": len(ratings),
    }
