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
                  ml_catalog.item_tags, ml_catalog.item_attrs, spec.item_cardinalities,
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
        p, rating, p_interact = ranker(**inputs)
    assert p.shape == rating.shape == p_interact.shape == (5, 30)
    assert ((p > 0) & (p < 1)).all()
    assert ((p_interact > 0) & (p_interact < 1)).all() and (p <= p_interact).all()
    assert ((rating >= 1) & (rating <= 5)).all()


def test_a_candidates_scores_do_not_depend_on_the_other_candidates(ranker, inputs) -> None:
    with torch.no_grad():
        p_all, r_all, i_all = ranker(**inputs)
        flipped = {**inputs, "items": inputs["items"].flip(1)}
        p_flip, r_flip, i_flip = ranker(**flipped)
        single = {**inputs, "items": inputs["items"][:, :1]}
        p_one, r_one, i_one = ranker(**single)
    torch.testing.assert_close(p_all, p_flip.flip(1))
    torch.testing.assert_close(r_all, r_flip.flip(1))
    torch.testing.assert_close(i_all, i_flip.flip(1))
    torch.testing.assert_close(p_all[:, :1], p_one)
    torch.testing.assert_close(r_all[:, :1], r_one)
    torch.testing.assert_close(i_all[:, :1], i_one)


def test_empty_history_and_unknown_user_give_finite_scores(ranker, inputs) -> None:
    cold = {**inputs, "user_index": torch.zeros(5, dtype=torch.long),
            "history": torch.zeros_like(inputs["history"])}  # fmt: skip
    with torch.no_grad():
        p, rating, p_interact = ranker(**cold)
    assert torch.isfinite(p).all() and torch.isfinite(rating).all()
    assert torch.isfinite(p_interact).all()


def _bce(p: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.binary_cross_entropy(p, labels)


def test_p_positive_is_p_interact_times_p_likes(ranker, inputs) -> None:
    with torch.no_grad():
        interact, likes, rating = ranker.logits(**inputs)
        p, rating_out, p_interact = ranker(**inputs)
    torch.testing.assert_close(p_interact, torch.sigmoid(interact))
    torch.testing.assert_close(p, torch.sigmoid(interact) * torch.sigmoid(likes))
    torch.testing.assert_close(rating, rating_out)


def test_loss_combines_interact_and_likes_bce_and_mse(ranker, inputs) -> None:
    items = inputs["items"][:, :1]
    ratings = torch.tensor([5.0, 4.0, 3.0, 1.0, 2.0])
    args = (inputs["user_index"], inputs["profile"], inputs["history"])
    loss = ranker_loss(ranker, *args, items, ratings)
    with torch.no_grad():
        interact, likes, rating = ranker.logits(*args, items)
    expected = (
        _bce(torch.sigmoid(interact), torch.ones_like(interact))  # every rated item interacted
        + _bce(torch.sigmoid(likes[:, 0]), (ratings >= 4).float())
        + torch.mean((rating[:, 0] - ratings) ** 2)
    )
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.slow
def test_trained_ranker_beats_chance_and_the_mean_rating(tiny_bundle: Path) -> None:
    """Held-out events were all interacted with, so "rating >= 4" among them is what the
    conditional factor P(rating >= 4 | interact) predicts; the exported joint P(positive) also
    carries P(interact), which varies among rated items without telling liked from disliked."""
    metrics = json.loads((tiny_bundle / "manifest.json").read_text())["metrics"]["ranker"]
    assert metrics["auc_given_interaction"] > 0.7
    assert metrics["logloss_given_interaction"] < np.log(2)
    assert metrics["auc"] > 0.55
    assert metrics["rmse"] < metrics["rmse_train_mean_baseline"] - 0.1
    assert np.isfinite(metrics["logloss"])


def test_ranker_with_retrieval_score_adds_it_to_the_positive_logit(ml_catalog, inputs) -> None:
    from training.models import TwoTowerConfig, UserTower
    from training.models.ranker import RetrievalScore

    torch.manual_seed(0)
    spec = ml_catalog.spec
    side = (ml_catalog.item_tags, ml_catalog.item_attrs, spec.item_cardinalities)
    tower = UserTower(ml_catalog.n_users, ml_catalog.n_items, spec.profile_cardinalities, *side,
                      TwoTowerConfig())  # fmt: skip
    embeddings = np.random.default_rng(0).normal(size=(ml_catalog.n_items, 64)).astype(np.float32)
    retrieval = RetrievalScore(tower, embeddings)
    model = Ranker(ml_catalog.n_users, ml_catalog.n_items, spec.profile_cardinalities, *side,
                   RankerConfig(), retrieval).eval()  # fmt: skip
    with torch.no_grad():
        p, rating, p_interact = model(**inputs)
        scores = retrieval(**inputs)
        interact, _, _ = model.logits(**inputs)
    assert p.shape == rating.shape == p_interact.shape == scores.shape == (5, 30)
    torch.testing.assert_close(p_interact, torch.sigmoid(interact))
    assert not any(param.requires_grad for param in retrieval.parameters())


def test_negatives_are_interact_label_zero_without_likes_or_rating_loss(ranker, inputs) -> None:
    items, negatives = inputs["items"][:, :1], inputs["items"][:, 1:4]
    ratings = torch.tensor([5.0, 4.0, 3.0, 1.0, 2.0])
    args = (inputs["user_index"], inputs["profile"], inputs["history"])
    loss = ranker_loss(ranker, *args, items, ratings, 4.0, negatives)
    with torch.no_grad():
        interact, likes, rating = ranker.logits(*args, torch.cat([items, negatives], dim=1))
    labels = torch.zeros_like(interact)
    labels[:, 0] = 1.0
    expected = (
        _bce(torch.sigmoid(interact), labels)
        + _bce(torch.sigmoid(likes[:, 0]), (ratings >= 4).float())
        + torch.mean((rating[:, 0] - ratings) ** 2)
    )
    assert float(loss.detach()) == pytest.approx(float(expected), rel=1e-5)


def _plain_logits(model: Ranker, user_index, profile, history, items):
    """Ranker.logits as it was before the MLP's first layer was split: the user part expanded
    to every candidate and concatenated with the candidate's part, self.over on the whole row."""
    from training.models.layers import known_rows, masked_mean
    from training.models.ranker import repeat_features

    mask = (history > 0).to(torch.float32)
    hist = model.item_features(history)
    cand = model.item_features(items)
    attended = model.attention(cand, hist, mask)
    user = torch.cat(
        [model.user_id(user_index), model.profile(profile), masked_mean(hist, mask)], dim=-1
    )
    user = user.unsqueeze(1).expand(-1, items.shape[1], -1)
    parts = [user, cand, attended, cand * attended]
    score = repeat = None
    if model.retrieval is not None:
        score = model.retrieval(user_index, profile, history, items)
        parts.append(score.unsqueeze(-1))
    if model.repeat_weight is not None:
        repeat = repeat_features(history, items)
        parts.append(repeat)
    heads = model.heads(model.over(torch.cat(parts, dim=-1)))
    item_bias = model.item_bias(known_rows(items, model.item_features.n_items)).squeeze(-1)
    bias = model.user_bias(user_index) + item_bias + model.global_bias
    low, high = model.rating_scale
    rating = low + (high - low) * torch.sigmoid(heads[..., 2] + bias)
    interact = heads[..., 0]
    if score is not None:
        interact = interact + model.retrieval_weight * score
    if repeat is not None:
        interact = interact + model.repeat_weight(repeat).squeeze(-1)
    return interact, heads[..., 1], rating


@pytest.mark.parametrize("with_retrieval", [False, True])
@pytest.mark.parametrize("with_repeat", [False, True])
def test_split_first_layer_equals_the_plain_concatenation(
    ml_catalog, with_retrieval: bool, with_repeat: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The user part goes through the MLP's first layer once per user (Ranker.hidden): same
    parameters (state_dict keys and shapes), same logits, loss and gradients as the plain
    concatenation of the user part with every candidate's, on random inputs and weights."""
    from training.models import TwoTowerConfig, UserTower
    from training.models.ranker import RetrievalScore
    from training.models.rating import InteractGraph

    torch.manual_seed(1)
    spec = ml_catalog.spec
    side = (ml_catalog.item_tags, ml_catalog.item_attrs, spec.item_cardinalities)
    retrieval = None
    if with_retrieval:
        tower = UserTower(ml_catalog.n_users, ml_catalog.n_items, spec.profile_cardinalities,
                          *side, TwoTowerConfig())  # fmt: skip
        vectors = np.random.default_rng(1).normal(size=(ml_catalog.n_items, 64))
        retrieval = RetrievalScore(tower, vectors.astype(np.float32))
    config = RankerConfig(repeat_features=with_repeat)
    model = Ranker(ml_catalog.n_users, ml_catalog.n_items, spec.profile_cardinalities, *side,
                   config, retrieval)  # fmt: skip
    first = model.over[0]
    assert first.in_features == model.user_width + 3 * model.item_features.out_dim + (
        int(with_retrieval) + (4 if with_repeat else 0)
    )
    assert "over.0.weight" in model.state_dict() and not any(
        "user_width" in k for k in model.state_dict()
    )
    g = torch.Generator().manual_seed(2)
    b, h, n = 6, 20, 40
    history = torch.randint(1, ml_catalog.n_items, (b, h), generator=g)
    history[:, 12:] = 0  # padding
    history[0] = 0  # an empty history
    items = torch.randint(1, ml_catalog.n_items, (b, n), generator=g)
    items[:, :5] = history[:, :5]  # candidates in the history: repeat features non-zero
    profile = torch.stack(
        [torch.randint(0, c, (b,), generator=g) for c in spec.profile_cardinalities], dim=1
    )
    user_index = torch.randint(0, ml_catalog.n_users, (b,), generator=g)
    args = (user_index, profile, history, items)

    model.eval()
    with torch.no_grad():
        new = model.logits(*args)
        old = _plain_logits(model, *args)
        interact_only = model.interact_logit(*args)
        p_interact = InteractGraph(model)(*args)
    for got, want in zip(new, old, strict=True):
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(interact_only, old[0], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(p_interact, torch.sigmoid(old[0]), atol=1e-5, rtol=1e-5)

    # training: the same loss and gradients on a fixed batch
    model.train()
    ratings = torch.tensor([5.0, 4.0, float("nan"), 1.0, 2.0, 3.0])
    trainable = [p for p in model.parameters() if p.requires_grad]
    loss_new = ranker_loss(model, *args[:3], items[:, :1], ratings, 4.0, items[:, 1:])
    grads_new = torch.autograd.grad(loss_new, trainable, allow_unused=True)
    monkeypatch.setattr(model, "logits", lambda *a: _plain_logits(model, *a))
    loss_old = ranker_loss(model, *args[:3], items[:, :1], ratings, 4.0, items[:, 1:])
    grads_old = torch.autograd.grad(loss_old, trainable, allow_unused=True)
    assert float(loss_new.detach()) == pytest.approx(float(loss_old.detach()), abs=1e-6)
    for got, want in zip(grads_new, grads_old, strict=True):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)
