"""Next-basket evaluation (training.evaluate.baskets, basket_models): the split, the metrics'
arithmetic and each baseline on toy data with a known answer; one run on a slice of Instacart."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from training.data import make_events
from training.evaluate import basket_models as B
from training.evaluate import references as R
from training.evaluate.baskets import (
    Relevant,
    basket_keys,
    basket_split,
    last_basket,
    repeat_share,
    score_baskets,
)

pytestmark = pytest.mark.timeout(60)
DAY = 86_400


def _orders(rows: list[tuple[str, str, int, str]]) -> pd.DataFrame:
    """(user, item, day, order) -> canonical events, lines of an order 1 s apart."""
    frame = pd.DataFrame(rows, columns=["user", "item", "day", "order"])
    stamp = frame["day"] * DAY + frame.groupby("order").cumcount()
    return make_events(frame["user"], frame["item"], stamp, order_id=frame["order"])


@pytest.fixture
def shop() -> pd.DataFrame:
    return _orders([
        ("u1", "milk", 0, "o1"), ("u1", "bread", 0, "o1"),
        ("u1", "milk", 3, "o2"), ("u1", "eggs", 3, "o2"),
        ("u1", "milk", 6, "o3"), ("u1", "jam", 6, "o3"),
        ("u2", "tea", 1, "o4"), ("u2", "milk", 1, "o4"),
        ("u2", "tea", 5, "o5"),
        ("u3", "tea", 2, "o6"),  # one basket only: no test, no valid
    ])  # fmt: skip


def test_last_basket_per_user_is_test_and_nothing_leaks(shop):
    split = basket_split(shop)
    assert set(split.test["order_id"]) == {"o3", "o5"}
    assert set(split.valid["order_id"]) == {"o2"}  # u2 has one train basket: no valid one
    assert set(split.fit["order_id"]) == {"o1", "o4", "o6"}
    assert len(split.train) + len(split.test) == len(shop)
    assert not set(split.train["order_id"]) & set(split.test["order_id"])
    last_train = split.train.groupby("user_id")["timestamp"].max()
    first_test = split.test.groupby("user_id")["timestamp"].min()
    assert (last_train.reindex(first_test.index) < first_test).all()
    assert "u3" in set(split.train["user_id"]) and "u3" not in set(split.test["user_id"])
    assert split.describe()["basket"] == "order_id"


def test_without_order_ids_a_basket_is_a_calendar_day():
    events = make_events(["a", "a", "a"], ["x", "y", "z"], [0, 10, DAY + 5])
    assert basket_keys(events).nunique() == 2
    rest, last = last_basket(events)
    assert last["item_id"].tolist() == ["z"] and rest["item_id"].tolist() == ["x", "y"]


def test_repeat_and_new_recall_arithmetic(shop):
    split = basket_split(shop)
    rel = Relevant.of(split.train, split.test)
    assert rel.all == {"u1": {"milk", "jam"}, "u2": {"tea"}}
    assert rel.repeat == {"u1": {"milk"}, "u2": {"tea"}}
    assert rel.new == {"u1": {"jam"}, "u2": set()}
    assert rel.repeat_share() == pytest.approx(2 / 3)
    rec = {"u1": ["milk", "bread"], "u2": ["milk", "tea"]}
    s = score_baskets(rec, rel)
    assert s["recall@20"] == pytest.approx((1 / 2 + 1) / 2)
    assert s["repeat_recall@20"] == pytest.approx(1.0)
    assert s["new_recall@20"] == pytest.approx(0.0)  # only u1 has a new item, missed
    assert s["n_users_with_new"] == 1
    ideal_u1 = 1 + 1 / np.log2(3)
    assert s["ndcg@10"] == pytest.approx((1 / ideal_u1 + 1 / np.log2(3)) / 2)
    bought = split.train.groupby("user_id")["item_id"].agg(set).to_dict()
    other = {"u1": ["milk", "bread"], "u2": ["jam", "tea"]}
    assert repeat_share(other, bought) == pytest.approx(3 / 4)  # u2 never bought jam


def test_user_frequency_counts_then_recency_then_popularity():
    events = _orders([
        ("a", "x", 0, "1"), ("a", "y", 0, "1"),
        ("a", "x", 1, "2"), ("a", "z", 1, "2"),
        ("b", "w", 0, "3"), ("c", "w", 0, "4"), ("c", "v", 0, "4"),
    ])  # fmt: skip
    items = ["v", "w", "x", "y", "z"]
    lists = B.top_lists(B.UserFrequency(events), events, items, ["a", "b"])
    # a: x twice; z (day 1) beats y (day 0); then the rest by popularity: w (2 users), v.
    assert lists["a"] == ["x", "z", "y", "w", "v"]
    assert lists["b"][0] == "w"


def test_ease_matches_the_closed_form_and_may_recommend_bought_items():
    x = np.array([[1, 1, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1], [0, 0, 1, 1]], dtype=float)
    users, cols = np.nonzero(x)
    events = make_events([f"u{u}" for u in users], [f"i{c}" for c in cols], np.arange(users.size))
    data = R.Interactions.from_events(events)
    model = R.EASE(lam=0.5).fit(data)
    p = np.linalg.inv(x.T @ x + 0.5 * np.eye(4))
    expected = np.eye(4) - p / np.diag(p)[None, :]
    np.testing.assert_allclose(model.weights, expected, atol=1e-10)
    lists = R.recommend(model, data, ["u0"], 4, exclude_seen=False)
    assert set(lists["u0"]) == {"i0", "i1", "i2", "i3"}
    assert R.recommend(model, data, ["u0"], 2)["u0"] == ["i2", "i3"]  # seen excluded


def test_item_knn_and_als_recommend_the_co_bought_item_again():
    # Everyone who buys p also buys q: a user with p gets q first, and p itself is allowed.
    rows = [(f"u{u}", it) for u in range(8) for it in ("p", "q")] + [("u8", "p"), ("u9", "r")]
    events = make_events([u for u, _ in rows], [i for _, i in rows], np.arange(len(rows)))
    items = ["p", "q", "r"]
    knn = B.top_lists(R.ItemKNN(2), events, items, ["u8"])
    assert knn["u8"][0] == "q"
    als = B.top_lists(R.ImplicitALS(factors=2, reg=0.1, alpha=5.0, iterations=8), events,
                      items, ["u8"])  # fmt: skip
    assert als["u8"][:2] in (["p", "q"], ["q", "p"])


@pytest.fixture(scope="module")
def instacart_slice(data_dir):
    from training.data.builtin import resolve
    from training.data.dataset import load_dataset

    data = load_dataset(resolve(data_dir, "instacart"))
    users = sorted(data.events["user_id"].unique())[:60]
    return data.events[data.events["user_id"].isin(set(users))].reset_index(drop=True)


def test_instacart_slice_split_and_frequency_beats_popularity(instacart_slice):
    events = instacart_slice
    split = basket_split(events)
    assert split.describe()["basket"] == "order_id"
    assert split.test["user_id"].nunique() == events["user_id"].nunique()
    for user, test in split.test.groupby("user_id"):
        assert test["order_id"].nunique() == 1
        train = split.train[split.train["user_id"] == user]
        assert not set(train["order_id"]) & set(test["order_id"])
        # No train basket starts after the test basket (Instacart has orders placed in the
        # same hour: equal start times, so <=).
        starts = train.groupby("order_id")["timestamp"].min()
        assert starts.max() <= test["timestamp"].min()
    rel = Relevant.of(split.train, split.test)
    assert 0.4 < rel.repeat_share() < 0.9
    items = sorted(set(events["item_id"]))
    freq = B.top_lists(B.UserFrequency(split.train), split.train, items, rel.users)
    pop = B.top_lists(R.Popularity(), split.train, items, rel.users)
    f, p = score_baskets(freq, rel), score_baskets(pop, rel)
    assert f["recall@20"] > p["recall@20"] and f["ndcg@10"] > p["ndcg@10"]
    assert f["new_recall@20"] <= p["new_recall@20"] + 1e-9  # frequency only repeats
