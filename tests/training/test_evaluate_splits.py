"""training.evaluate.splits and .io: split properties on the real data, TSV round trips."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training.evaluate import io
from training.evaluate.splits import (
    rating_folds,
    read_rating_folds,
    read_topk_split,
    topk_split,
    write_splits,
)


@pytest.fixture(scope="module")
def events(movielens) -> pd.DataFrame:
    return movielens.events


@pytest.fixture(scope="module")
def split(events):
    return topk_split(events)


def _keys(frame: pd.DataFrame) -> set[tuple[str, str, int]]:
    return set(zip(frame["user_id"], frame["item_id"], frame["timestamp"], strict=True))


def test_topk_split_partitions_events_and_train_is_fit_plus_valid(events, split):
    assert len(split.train) + len(split.test) == len(events)
    assert not _keys(split.train) & _keys(split.test)
    assert _keys(split.fit) | _keys(split.valid) == _keys(split.train)
    assert not _keys(split.fit) & _keys(split.valid)


def test_topk_test_is_each_users_last_fifth(events, split):
    per_user = events.groupby("user_id").size()
    n_test = split.test.groupby("user_id").size()
    expected = np.maximum(1, np.ceil(per_user * 0.2)).astype(int)
    assert (n_test.reindex(per_user.index) == expected).all()
    last_train = split.train.groupby("user_id")["timestamp"].max()
    first_test = split.test.groupby("user_id")["timestamp"].min()
    assert (first_test >= last_train.reindex(first_test.index)).all()
    last_fit = split.fit.groupby("user_id")["timestamp"].max()
    first_valid = split.valid.groupby("user_id")["timestamp"].min()
    assert (first_valid >= last_fit.reindex(first_valid.index)).all()


def test_rating_folds_partition_all_ratings_and_are_seeded(events):
    folds = rating_folds(events, 5, seed=3)
    sizes = [len(f.test) for f in folds]
    assert sum(sizes) == len(events) and max(sizes) - min(sizes) <= 1
    tests = [_keys(f.test) for f in folds]
    assert set().union(*tests) == _keys(events)
    assert all(not tests[0] & t for t in tests[1:])
    assert all(len(f.train) + len(f.test) == len(events) for f in folds)
    assert _keys(rating_folds(events, 5, seed=3)[0].test) == tests[0]
    assert _keys(rating_folds(events, 5, seed=4)[0].test) != tests[0]


def test_splits_round_trip_through_tsv(tmp_path: Path, events, split):
    small = events[events["user_id"].isin(["1", "2", "3"])]
    sm_split, sm_folds = topk_split(small), rating_folds(small, 2)
    meta = write_splits(tmp_path, sm_split, sm_folds, {"seed": 0})
    assert json.loads((tmp_path / "split.json").read_text()) == meta
    assert meta["files"]["topk/test.tsv"]["rows"] == len(sm_split.test)
    back = read_topk_split(tmp_path)
    pd.testing.assert_frame_equal(back.test, sm_split.test.reset_index(drop=True))
    assert len(read_rating_folds(tmp_path)) == 2
    first = (tmp_path / "topk" / "train.tsv").read_text().splitlines()[0].split("\t")
    assert len(first) == 4 and float(first[2]) in {1, 2, 3, 4, 5}


def test_topk_and_prediction_tsv_round_trip(tmp_path: Path):
    lists = {"u1": ["10", "20", "30"], "u2": ["5"]}
    assert io.read_topk(io.write_topk(lists, tmp_path / "topk.tsv")) == lists
    preds = pd.DataFrame(
        {"user_id": ["u1", "u2"], "item_id": ["10", "5"], "prediction": [3.5, 4.25]}
    )
    back = io.read_predictions(io.write_predictions(preds, tmp_path / "pred.tsv"))
    pd.testing.assert_frame_equal(back, preds)


def test_readers_accept_a_header_line(tmp_path: Path):
    path = tmp_path / "with_header.tsv"
    path.write_text("user\titem\trank\nu1\t7\t2\nu1\t9\t1\n")
    assert io.read_topk(path) == {"u1": ["9", "7"]}
