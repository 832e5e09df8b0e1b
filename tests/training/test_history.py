"""Training examples and the temporal split: what each example's history holds."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from training.models.train import make_examples
from training.split import temporal_split


def test_history_holds_the_same_users_earlier_items_most_recent_first(ml_catalog, ml_split) -> None:
    train = ml_split[0]
    examples = make_examples(ml_catalog, train)
    h = ml_catalog.spec.history_len
    user = int(train["user_index"].iloc[0])
    rows = np.flatnonzero(train["user_index"].to_numpy() == user)
    items = train["item_index"].to_numpy()[rows]
    for k in (0, 1, 5, len(rows) - 1):
        expected = np.zeros(h, dtype=np.int64)
        previous = items[:k][::-1][:h]
        expected[: len(previous)] = previous
        np.testing.assert_array_equal(examples["history"][rows[k]].numpy(), expected)


def test_first_event_of_every_user_has_an_empty_history(ml_catalog, ml_split) -> None:
    train = ml_split[0]
    examples = make_examples(ml_catalog, train)
    first = ~train["user_index"].duplicated().to_numpy()
    assert first.sum() == train["user_index"].nunique()
    assert not examples["history"][torch.from_numpy(np.flatnonzero(first))].any()


def test_history_never_contains_the_target_itself(ml_catalog, ml_split) -> None:
    examples = make_examples(ml_catalog, ml_split[0])
    hits = (examples["history"] == examples["items"].unsqueeze(1)).any(dim=1)
    assert not hits.any()  # MovieLens has one rating per (user, item)


def test_split_holds_out_each_users_last_tenth(movielens) -> None:
    split = temporal_split(movielens.events, test_fraction=0.1)
    assert len(split.train) + len(split.test) == movielens.n_events
    per_user = movielens.events.groupby("user_id").size()
    held = split.test.groupby("user_id").size().reindex(per_user.index, fill_value=0)
    assert (held >= 1).all()
    np.testing.assert_array_equal(held.to_numpy(), np.ceil(per_user.to_numpy() * 0.1))


def test_held_out_events_are_never_earlier_than_the_users_training_events(movielens) -> None:
    split = temporal_split(movielens.events)
    last_train = split.train.groupby("user_id")["timestamp"].max()
    first_test = split.test.groupby("user_id")["timestamp"].min()
    assert (first_test >= last_train.reindex(first_test.index)).all()


def test_a_user_with_one_event_keeps_it_for_training() -> None:
    events = pd.DataFrame(
        {"user_id": ["a", "b", "b"], "item_id": ["1", "1", "2"], "timestamp": [1, 2, 3],
         "rating": [4.0, 3.0, 5.0], "value": [1.0, 1.0, 1.0]}
    )  # fmt: skip
    split = temporal_split(events)
    assert split.train["user_id"].tolist() == ["a", "b"]
    assert split.test["item_id"].tolist() == ["2"]
