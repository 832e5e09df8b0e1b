"""Next-basket baselines, each tuned on the validation basket (fit -> valid) and refit on train.

popularity           items by number of training users (training.evaluate.references)
user frequency       the user's own most bought items, ties by the latest purchase; the
                     remaining slots by popularity (P-TopFreq in Li et al. 2021, "A Next
                     Basket Recommendation Reality Check": the strongest simple baseline)
item-kNN, EASE,      training.evaluate.references on the binary user x item matrix, with
implicit ALS         the user's own items allowed (groceries are bought again)
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.evaluate import references as R
from training.evaluate.baskets import K_NDCG, K_RECALL, Relevant, score_baskets

K = max(K_RECALL, K_NDCG)
KNN_GRID = (25, 50, 100, 200, 400)
EASE_GRID = (50.0, 200.0, 500.0, 2000.0)
EASE_MIN_USERS = 2  # items bought by one training user only stay out of the I x I solve
ALS_GRID = (
    {"factors": 64, "reg": 10.0, "alpha": 10.0},
    {"factors": 64, "reg": 50.0, "alpha": 5.0},
    {"factors": 128, "reg": 50.0, "alpha": 10.0},
    {"factors": 128, "reg": 100.0, "alpha": 20.0},
)
TUNE_METRIC = f"ndcg@{K_NDCG}"
LABELS = {
    "popularity": "popularity",
    "user_frequency": "user's own most frequent items",
    "item_knn": "item-kNN cosine",
    "ease": "EASE",
    "implicit_als": "implicit ALS MF",
}


def purchase_counts(
    events: pd.DataFrame, data: R.Interactions
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """-> (count, last) float64[U, I] over data's users and items: how often each user bought each
    item, and the position (1-based, in time order) of the user's latest purchase of it."""
    u_row = {u: i for i, u in enumerate(data.user_ids)}
    i_col = {t: i for i, t in enumerate(data.item_ids)}
    ev = events.assign(_pos=np.arange(1, len(events) + 1))
    ev = ev.sort_values(["timestamp", "_pos"], kind="stable")
    rows = ev["user_id"].map(u_row)
    cols = ev["item_id"].map(i_col)
    ok = (rows.notna() & cols.notna()).to_numpy()
    rows, cols = rows.to_numpy()[ok].astype(np.int64), cols.to_numpy()[ok].astype(np.int64)
    shape = data.binary.shape
    count = sp.csr_matrix((np.ones(rows.size), (rows, cols)), shape=shape)
    order = np.arange(1, rows.size + 1, dtype=np.float64)
    frame = pd.DataFrame({"r": rows, "c": cols, "o": order}).groupby(["r", "c"])["o"].max()
    last = sp.csr_matrix(
        (frame.to_numpy(), (frame.index.get_level_values(0), frame.index.get_level_values(1))),
        shape=shape,
    )
    return count, last


class UserFrequency:
    """score = count + recency in (0, 1) (the user's items ordered by their latest purchase), so
    counts order first and the latest bought wins a tie; unbought items get popularity / (max + 1)
    < 1, below every bought item."""

    name = "user_frequency"

    def __init__(self, events: pd.DataFrame) -> None:
        self.events = events

    def fit(self, data: R.Interactions) -> UserFrequency:
        self.count, self.last = purchase_counts(self.events, data)
        popularity = np.asarray(data.binary.sum(axis=0)).ravel()
        self.fill = popularity / (popularity.max(initial=0.0) + 1.0)
        return self

    def scores(self, data: R.Interactions, rows: np.ndarray) -> np.ndarray:
        count = self.count[rows].toarray()
        last = self.last[rows].toarray()
        # Rank of each item's latest purchase among the user's items, scaled into (0, 1).
        rank = np.argsort(np.argsort(last, axis=1, kind="stable"), axis=1, kind="stable")
        n_bought = (count > 0).sum(axis=1, keepdims=True)
        recency = (rank - (last.shape[1] - n_bought) + 1) / (n_bought + 1.0)
        return np.where(count > 0, count + recency, self.fill[None, :])


Model = R.TopKModel | UserFrequency
Factory = Callable[[pd.DataFrame], Model]


def grids() -> dict[str, list[tuple[dict[str, Any], Factory]]]:
    """name -> [(hyper-parameters, events -> unfitted model)]."""

    def als(p: dict[str, Any]) -> Factory:
        return lambda _ev: R.ImplicitALS(**p, seed=0)

    return {
        "popularity": [({}, lambda _ev: R.Popularity())],
        "user_frequency": [({}, UserFrequency)],
        "item_knn": [({"neighbours": n}, lambda _ev, n=n: R.ItemKNN(n)) for n in KNN_GRID],
        "ease": [
            (
                {"lambda": lam, "min_users": EASE_MIN_USERS},
                lambda _ev, lam=lam: R.EASE(lam, EASE_MIN_USERS),
            )
            for lam in EASE_GRID
        ],
        "implicit_als": [(p, als(p)) for p in ALS_GRID],
    }


def top_lists(
    model: Model, events: pd.DataFrame, item_ids: list[str], users: list[str]
) -> dict[str, list[str]]:
    """Fit on `events`, then each user's top K over the whole catalog, bought items allowed."""
    data = R.Interactions.from_events(events, item_ids)
    return R.recommend(model.fit(data), data, users, K, exclude_seen=False)


def tune_and_score(
    fit: pd.DataFrame,
    valid_relevant: Relevant,
    train: pd.DataFrame,
    test_relevant: Relevant,
    item_ids: list[str],
    log: Callable[[str], None] = print,
) -> tuple[dict[str, dict[str, list[str]]], dict[str, Any]]:
    """Every baseline: each grid point scored fit -> valid, the best (by TUNE_METRIC) refit on
    train -> its test lists. -> (lists per baseline, {name: params, valid scores, tuning})."""
    lists: dict[str, dict[str, list[str]]] = {}
    info: dict[str, Any] = {}
    for name, grid in grids().items():
        tuning = []
        for params, make in grid:
            rec = top_lists(make(fit), fit, item_ids, valid_relevant.users)
            tuning.append({"params": params, "valid": score_baskets(rec, valid_relevant)})
            log(f"[baskets] {name} {json.dumps(params)}: valid {TUNE_METRIC} "
                f"{tuning[-1]['valid'][TUNE_METRIC]:.4f}")  # fmt: skip
        best = max(range(len(grid)), key=lambda j: tuning[j]["valid"][TUNE_METRIC])
        lists[name] = top_lists(grid[best][1](train), train, item_ids, test_relevant.users)
        info[name] = {"params": grid[best][0], "valid": tuning[best]["valid"], "tuning": tuning}
    return lists, info
