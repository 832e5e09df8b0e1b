"""Multi-task ranker: output ranges and shapes, candidate independence, offline quality."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.models import Ranker, RankerConfig
from training.models.ranker import ranker_loss
from training.models.train import make_examples


@pytest.fixture(scope="module")
def ranker(ml_catalog) -> Ranker:
    torch.manual_seed(0)
    spec = ml_catalog.spec
    return Ranker(ml_catalog.n_users, ml_catalog.n_items, spec.profile_cardinalities,
                  ml_catalog.item_tags, ml_catalog.item_years, spec.n_year_buckets,
                  RankerConfig()).eval()  # fmt: skip


@pytest.fixture(scope="module")
def inputs(ml_catalog, ml_split) -> dict[str, torch.Tensor]:
    examples = make_examples(ml_catalog, ml_split[0])
    rows = slice(100, 105)
    out = {k: examples[k][rows] for k in ("user_index", "profile", "history")}
    out["items"] = torch.randint(
        1, ml_catalog.n_items, (5, 30), generator=torch.Generator().manual_seed(0)
    )
    return out


def test_outputs_are_probabilities_and_ratings_per_candidate(ranker, inputs) -> None:
    with torch.no_grad():
        p, rating = ranker(**inputs)
    assert p.shape == rating.shape == (5, 30)
    assert ((p > 0) & (p < 1)).all()
    assert ((rating >= 1) & (rating <= 5)).all()


def test_a_candidates_scores_do_not_depend_on_the_other_candidates(ranker, inputs) -> None:
    with torch.no_grad():
        p_all, r_all = ranker(**inputs)
        flipped = {**inputs, "items": inputs["items"].flip(1)}
        p_flip, r_flip = ranker(**flipped)
        single = {**inputs, "items": inputs["items"][:, :1]}
        p_one, r_one = ranker(**single)
    torch.testing.assert_close(p_all, p_flip.flip(1))
    torch.testing.assert_close(r_all, r_flip.flip(1))
    torch.testing.assert_close(p_all[:, :1], p_one)
    torch.testing.assert_close(r_all[:, :1], r_one)


def test_empty_history_and_unknown_user_give_finite_scores(ranker, inputs) -> None:
    cold = {**inputs, "user_index": torch.zeros(5, dtype=torch.long),
            "history": torch.zeros_like(inputs["history"])}  # fmt: skip
    with torch.no_grad():
        p, rating = ranker(**cold)
    assert torch.isfinite(p).all() and torch.isfinite(rating).all()


def test_loss_combines_bce_and_mse(ranker, inputs) -> None:
    items = inputs["items"][:, :1]
    ratings = torch.tensor([5.0, 4.0, 3.0, 1.0, 2.0])
    loss = ranker_loss(ranker, inputs["user_index"], inputs["profile"], inputs["history"], items,
                       ratings)  # fmt: skip
    with torch.no_grad():
        p, rating = ranker(inputs["user_index"], inputs["profile"], inputs["history"], items)
    labels = (ratings >= 4).float()
    bce = torch.nn.functional.binary_cross_entropy(p[:, 0], labels)
    mse = torch.mean((rating[:, 0] - ratings) ** 2)
    assert float(loss.detach()) == pytest.approx(float(bce + mse), rel=1e-5)


@pytest.mark.slow
def test_trained_ranker_beats_chance_and_the_mean_rating(tiny_bundle: Path) -> None:
    metrics = json.loads((tiny_bundle / "manifest.json").read_text())["metrics"]["ranker"]
    assert metrics["auc"] > 0.7
    assert metrics["rmse"] < metrics["rmse_train_mean_baseline"] - 0.1
    assert np.isfinite(metrics["logloss"]) and metrics["logloss"] < np.log(2)
