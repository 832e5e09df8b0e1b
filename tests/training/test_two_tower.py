"""Two-tower retrieval model: tower shapes, normalisation, cold-start users, training loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.models import ItemTower, TwoTower, TwoTowerConfig, UserTower
from training.models.train import FitConfig, fit, make_examples

CONFIG = TwoTowerConfig(embedding_dim=64)


def _two_tower(catalog) -> TwoTower:
    torch.manual_seed(0)
    spec = catalog.spec
    side = (catalog.item_tags, catalog.item_attrs, spec.item_cardinalities)
    user = UserTower(catalog.n_users, catalog.n_items, spec.profile_cardinalities, *side, CONFIG)
    item = ItemTower(catalog.n_items, *side, CONFIG)
    log_q = np.full(catalog.n_items, -np.log(catalog.n_items))
    return TwoTower(user, item, log_q, CONFIG.temperature)


@pytest.fixture(scope="module")
def examples(ml_catalog, ml_split):
    return make_examples(ml_catalog, ml_split[0])


def test_user_tower_gives_unit_vectors_of_embedding_dim(ml_catalog, examples) -> None:
    model = _two_tower(ml_catalog).eval()
    rows = slice(0, 7)
    with torch.no_grad():
        out = model.user_tower(
            examples["user_index"][rows], examples["profile"][rows], examples["history"][rows]
        )
    assert out.shape == (7, 64) and out.dtype == torch.float32
    np.testing.assert_allclose(out.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_item_embeddings_are_unit_vectors_with_a_zero_row_for_unknown(ml_catalog) -> None:
    embeddings = _two_tower(ml_catalog).item_embeddings(ml_catalog.n_items)
    assert embeddings.shape == (ml_catalog.n_items, 64)
    assert not embeddings[0].any()
    np.testing.assert_allclose(np.linalg.norm(embeddings[1:], axis=1), 1.0, atol=1e-5)


def test_unknown_user_with_empty_history_still_gets_a_unit_vector(ml_catalog) -> None:
    model = _two_tower(ml_catalog).eval()
    h = ml_catalog.spec.history_len
    with torch.no_grad():
        out = model.user_tower(
            torch.zeros(2, dtype=torch.long),
            torch.zeros(2, 3, dtype=torch.long),
            torch.zeros(2, h, dtype=torch.long),
        )
    assert torch.isfinite(out).all()
    np.testing.assert_allclose(out.norm(dim=1).numpy(), 1.0, atol=1e-5)


def test_in_batch_loss_falls_with_training(ml_catalog, examples) -> None:
    model = _two_tower(ml_catalog)
    subset = {k: v[:8192] for k, v in examples.items()}
    info = fit(
        model,
        lambda b: model.loss(b["user_index"], b["profile"], b["history"], b["items"]),
        subset,
        FitConfig(epochs=3, batch_size=512, lr=3e-3),
        desc="test",
        progress=False,
    )
    losses = info["epoch_losses"]
    assert losses[-1] < losses[0] - 0.2


def test_duplicate_items_in_a_batch_are_not_negatives(ml_catalog, examples) -> None:
    """With every row's positive the same item, each row's only candidate is its positive."""
    model = _two_tower(ml_catalog)
    rows = slice(0, 16)
    same_item = torch.full((16,), int(examples["items"][0]))
    loss = model.loss(
        examples["user_index"][rows],
        examples["profile"][rows],
        examples["history"][rows],
        same_item,
    )
    assert float(loss.detach()) == pytest.approx(0.0, abs=1e-6)


def test_training_is_deterministic_for_a_seed(ml_catalog, examples) -> None:
    subset = {k: v[:4096] for k, v in examples.items()}
    embeddings = []
    for _ in range(2):
        model = _two_tower(ml_catalog)
        fit(
            model,
            lambda b, m=model: m.loss(b["user_index"], b["profile"], b["history"], b["items"]),
            subset,
            FitConfig(epochs=1, batch_size=512, lr=3e-3, seed=7),
            desc="test",
            progress=False,
        )
        embeddings.append(model.item_embeddings(ml_catalog.n_items))
    np.testing.assert_array_equal(embeddings[0], embeddings[1])
