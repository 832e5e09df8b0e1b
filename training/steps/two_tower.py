"""Train the two-tower retrieval model (user tower + item tower, the items' training
popularity as its log prior) on the training examples."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from training.encode import EncodedCatalog
from training.models import ItemTower, TwoTower, TwoTowerConfig, UserTower
from training.models.train import Batch, FitConfig, fit
from training.steps.config import TrainConfig


def train_two_tower(
    cfg: TrainConfig, catalog: EncodedCatalog, train: pd.DataFrame, examples: Batch
) -> tuple[TwoTower, dict[str, Any]]:
    spec = catalog.spec
    model_cfg = TwoTowerConfig(embedding_dim=cfg.embedding_dim, temperature=cfg.temperature)
    user = UserTower(
        catalog.n_users,
        catalog.n_items,
        spec.profile_cardinalities,
        catalog.item_tags,
        catalog.item_attrs,
        spec.item_cardinalities,
        model_cfg,
    )
    item = ItemTower(
        catalog.n_items, catalog.item_tags, catalog.item_attrs, spec.item_cardinalities, model_cfg
    )
    counts = np.bincount(train["item_index"], minlength=catalog.n_items) + 1.0  # +1: smoothing
    model = TwoTower(user, item, np.log(counts / counts.sum()), cfg.temperature)
    fit_cfg = FitConfig(
        int(cfg.retrieval_epochs or 0),
        cfg.retrieval_batch_size,
        cfg.retrieval_lr,
        user_dropout=cfg.user_dropout,
        seed=cfg.seed,
        examples_per_epoch=cfg.examples_per_epoch,
    )
    info = fit(
        model,
        lambda b: model.loss(b["user_index"], b["profile"], b["history"], b["items"]),
        examples,
        fit_cfg,
        desc="two-tower",
        progress=cfg.progress,
    )
    return model, {
        "model": dataclasses.asdict(model_cfg),
        "fit": dataclasses.asdict(fit_cfg),
        **info,
    }
