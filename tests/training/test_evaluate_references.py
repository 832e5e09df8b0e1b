"""training.evaluate.references on a small real subset of MovieLens-100K."""

from __future__ import annotations

import numpy as np
import pytest

from training.evaluate import metrics as M
from training.evaluate import references as R
from training.evaluate.scoring import relevant_items
from training.evaluate.splits import rating_folds, topk_split


@pytest.fixture(scope="module")
def subset(movielens):
    users = sorted(movielens.events["user_id"].unique(), key=int)[:250]
    events = movielens.events[movielens.events["user_id"].isin(set(users))]
    split = topk_split(events)
    items = movielens.items["item_id"].astype(str).tolist()
    return (
        split,
        R.Interactions.from_events(split.train, items),
        relevant_items(split.train, split.test),
    )


def _lists(model, subset, k=20):
    _, data, relevant = subset
    return R.recommend(model.fit(data), data, sorted(relevant), k)


def test_recommend_excludes_training_items_and_returns_k_distinct(subset):
    split, _, _ = subset
    seen = split.train.groupby("user_id")["item_id"].apply(set)
    for user, items in _lists(R.ItemKNN(50), subset).items():
        assert len(items) == len(set(items)) == 20
        assert not set(items) & seen[user]


def test_popularity_orders_by_training_users(subset):
    split = subset[0]
    lists = _lists(R.Popularity(), subset, 5)
    counts = split.train.groupby("item_id")["user_id"].nunique()
    seen = split.train.groupby("user_id")["item_id"].apply(set)
    user = next(iter(lists))
    expected = [i for i in counts.sort_values(ascending=False, kind="stable").index
                if i not in seen[user]]  # fmt: skip
    assert [counts[i] for i in lists[user]] == [counts[i] for i in expected[:5]]


def test_personalised_references_beat_popularity(subset):
    _, _, relevant = subset
    pop = M.recall_at_k(_lists(R.Popularity(), subset), relevant, 20)
    knn = M.recall_at_k(_lists(R.ItemKNN(200), subset), relevant, 20)
    als = M.recall_at_k(_lists(R.ImplicitALS(32, iterations=6), subset), relevant, 20)
    assert knn > pop and als > pop


def test_rating_references_beat_the_global_mean(movielens):
    users = sorted(movielens.events["user_id"].unique(), key=int)[:300]
    fold = rating_folds(movielens.events[movielens.events["user_id"].isin(set(users))], 5)[0]
    truth = fold.test["rating"].to_numpy()
    mean = M.rmse(truth, R.GlobalMean().fit(fold.train).predict(fold.test))
    biases = M.rmse(truth, R.BiasedMF(0).fit(fold.train).predict(fold.test))
    mf = R.BiasedMF(10, reg=0.1, iterations=8).fit(fold.train).predict(fold.test)
    assert biases < mean - 0.1
    assert M.rmse(truth, mf) < mean - 0.1
    assert np.all((mf >= 1) & (mf <= 5))
