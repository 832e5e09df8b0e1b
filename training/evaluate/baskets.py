"""Next-basket evaluation for datasets where items are bought again (dataset.toml
behaviour.repeat = true, e.g. groceries): the split, the relevant sets and the metrics.

Split (per user, temporal): events are grouped into baskets by `order_id`; a dataset without
order ids uses calendar days (every event of one user on one UTC day is one basket). Each
user's last basket is test, the rest is train. Validation is carved the same way from train:
the last train basket per user is `valid`, the rest is `fit`. Users with fewer than two baskets
have no test basket (all their events stay in train); likewise for validation.

Relevance: the distinct items of the test basket. Repeat items are those the user bought in the
training part, new items the others; repeat recall and new recall are Recall@K over only those
items (averaged over the users that have at least one of them).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from services.contract.features import SECONDS_PER_DAY
from training.evaluate import metrics as M

K_RECALL, K_NDCG = 20, 10


def basket_keys(events: pd.DataFrame) -> pd.Series:
    """A basket id per event: its order_id, or (without order ids) the user's UTC day."""
    has_orders = "order_id" in events and bool((events["order_id"].astype(str) != "").all())
    if has_orders:
        return events["order_id"].astype(str)
    return (events["timestamp"].astype(np.int64) // SECONDS_PER_DAY).astype(str)


def basket_source(events: pd.DataFrame) -> str:
    if "order_id" in events and bool((events["order_id"].astype(str) != "").all()):
        return "order_id"
    return "calendar day"


def last_basket(events: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """-> (rest, last): each user's last basket (the latest to start; ties: to end, then the
    later in the log) split off. Users with a single basket stay whole in `rest`."""
    key = basket_keys(events)
    frame = events.assign(_basket=key.to_numpy(), _pos=np.arange(len(events)))
    per_basket = frame.groupby(["user_id", "_basket"], sort=False).agg(
        start=("timestamp", "min"), end=("timestamp", "max"), pos=("_pos", "max")
    )
    per_basket = per_basket.reset_index().sort_values(
        ["user_id", "start", "end", "pos"], kind="stable"
    )
    n_baskets = per_basket.groupby("user_id")["_basket"].transform("size")
    last = per_basket.groupby("user_id").tail(1)
    last = last[n_baskets.loc[last.index] >= 2]
    is_last = pd.MultiIndex.from_frame(frame[["user_id", "_basket"]]).isin(
        pd.MultiIndex.from_frame(last[["user_id", "_basket"]])
    )
    cols = list(events.columns)
    return (
        frame.loc[~is_last, cols].reset_index(drop=True),
        frame.loc[is_last, cols].reset_index(drop=True),
    )


@dataclass(frozen=True)
class BasketSplit:
    """train = fit ∪ valid, disjoint from test; each test/valid user's last basket."""

    train: pd.DataFrame
    test: pd.DataFrame
    fit: pd.DataFrame
    valid: pd.DataFrame

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "per_user_last_basket",
            "basket": basket_source(self.train),
            "n_train": len(self.train),
            "n_test": len(self.test),
            "n_fit": len(self.fit),
            "n_valid": len(self.valid),
            "n_test_users": int(self.test["user_id"].nunique()),
            "n_valid_users": int(self.valid["user_id"].nunique()),
        }


def basket_split(events: pd.DataFrame) -> BasketSplit:
    train, test = last_basket(events)
    fit, valid = last_basket(train)
    return BasketSplit(train, test, fit, valid)


@dataclass(frozen=True)
class Relevant:
    """Per user: the test basket's distinct items, and the part bought before / never."""

    all: dict[str, set[str]]
    repeat: dict[str, set[str]]
    new: dict[str, set[str]]

    @classmethod
    def of(cls, history: pd.DataFrame, basket: pd.DataFrame) -> Relevant:
        bought = history.groupby("user_id")["item_id"].agg(set).to_dict()
        everything: dict[str, set[str]] = {}
        repeat: dict[str, set[str]] = {}
        new: dict[str, set[str]] = {}
        for user, items in basket.groupby("user_id")["item_id"]:
            items_set = set(items.astype(str))
            before = bought.get(user, set())
            everything[str(user)] = items_set
            repeat[str(user)] = items_set & before
            new[str(user)] = items_set - before
        return cls(everything, repeat, new)

    @property
    def users(self) -> list[str]:
        return sorted(self.all)

    def repeat_share(self) -> float:
        n_all = sum(len(v) for v in self.all.values())
        return sum(len(v) for v in self.repeat.values()) / max(n_all, 1)


def score_baskets(recommended: Mapping[str, Sequence[str]], relevant: Relevant) -> dict[str, float]:
    """Recall@20 and NDCG@10 over the basket's distinct items; repeat and new Recall@20."""
    return {
        f"recall@{K_RECALL}": M.recall_at_k(recommended, relevant.all, K_RECALL),
        f"ndcg@{K_NDCG}": M.ndcg_at_k(recommended, relevant.all, K_NDCG),
        f"repeat_recall@{K_RECALL}": M.recall_at_k(recommended, relevant.repeat, K_RECALL),
        f"new_recall@{K_RECALL}": M.recall_at_k(recommended, relevant.new, K_RECALL),
        "n_users": float(len(relevant.all)),
        "n_users_with_repeat": float(sum(1 for v in relevant.repeat.values() if v)),
        "n_users_with_new": float(sum(1 for v in relevant.new.values() if v)),
    }


def repeat_share(recommended: Mapping[str, Sequence[str]], bought: Mapping[str, Collection[str]],
                 k: int = K_RECALL) -> float:  # fmt: skip
    """Share of the top-k slots that hold an item the user bought before."""
    slots = [i in bought.get(u, ()) for u, items in recommended.items() for i in list(items)[:k]]
    return float(np.mean(slots)) if slots else float("nan")
