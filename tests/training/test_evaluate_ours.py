"""training.evaluate.ours / tags / scoring / CLI on the session's tiny bundle: what users get,
scored end to end (retrieval, two-stage, the running gateway, RecommendTags, TSV scoring)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from training.evaluate import io
from training.evaluate import scoring as S
from training.evaluate.__main__ import main
from training.evaluate.ours import OurModel, gateway_answers
from training.evaluate.tags import evaluate_tags

USERS = ["1", "196", "305", "42", "7"]


@pytest.fixture(scope="module")
def ours(tiny_bundle: Path) -> OurModel:
    return OurModel.load(tiny_bundle)


@pytest.fixture(scope="module")
def train(tiny_bundle: Path) -> pd.DataFrame:
    frame = pd.read_parquet(tiny_bundle / "interactions.parquet")
    return frame.astype({"user_id": str, "item_id": str})


def test_retrieval_and_two_stage_rank_only_unseen_items(ours, train):
    seen = train.groupby("user_id")["item_id"].apply(set)
    retrieved = ours.retrieve(USERS, 50)
    ranked = ours.two_stage(USERS, 50, candidates=200)
    wide = ours.retrieve(USERS, 200)
    for user in USERS:
        for lists in (retrieved, ranked):
            assert len(lists[user]) == len(set(lists[user])) == 50
            assert not set(lists[user]) & seen[user]
        assert set(ranked[user]) <= set(wide[user])  # a re-ranking of retrieval's top 200


def test_gateway_answer_equals_in_process_two_stage(ours, tiny_bundle):
    assert gateway_answers(tiny_bundle, USERS[:3], k=20) == ours.two_stage(USERS[:3], 20)


def test_rating_predictions_and_probabilities(ours, movielens):
    pairs = movielens.events[movielens.events["user_id"].isin(USERS)].head(200)
    pred = ours.predict(pairs[["user_id", "item_id", "rating"]])
    assert pred["prediction"].between(1, 5).all() and pred["p_positive"].between(0, 1).all()
    scores = S.score_probabilities(pred["rating"].to_numpy(), pred["p_positive"].to_numpy())
    assert 0.0 <= scores["auc"] <= 1.0 and sum(scores["calibration"]["count"]) == len(pred)


def test_tag_evaluation_scores_ours_and_both_baselines(ours, train, movielens):
    test = movielens.events[movielens.events["user_id"].isin(USERS)].tail(40)
    result = evaluate_tags(train, test, movielens.items, ours.tag_affinities(USERS))
    assert set(result["systems"]) == {"ours", "tag_popularity", "user_history"}
    for row in result["systems"].values():
        assert 0.0 <= row["ndcg@3"] <= 1.0 and 0.0 <= row["weighted_recall@3"] <= 1.0


def test_score_cli_scores_another_systems_tsv_files(tmp_path, ours, train, movielens, capsys):
    split = tmp_path / "split"
    users = set(USERS)
    test = movielens.events[movielens.events["user_id"].isin(users)].tail(60)
    io.write_events(train[train["user_id"].isin(users)], split / "train.tsv")
    io.write_events(test, split / "test.tsv")
    topk = io.write_topk(ours.two_stage(USERS, 100), tmp_path / "topk.tsv")
    preds = ours.predict(test[["user_id", "item_id"]])
    pred_path = io.write_predictions(preds, tmp_path / "pred.tsv")
    argv = ["score", "--split", str(split), "--topk", str(topk), "--predictions", str(pred_path)]
    assert main(argv) == 0
    scores = json.loads(capsys.readouterr().out)
    assert 0.0 <= scores["recall@20"] <= 1.0 and scores["n_missing"] == 0
    assert scores["rmse"] == pytest.approx(
        S.score_ratings(test["rating"].to_numpy(), preds["prediction"].to_numpy())["rmse"]
    )
