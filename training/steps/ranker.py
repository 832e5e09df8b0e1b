"""Train the ranker: P(interact) against hard negatives from the frozen two-tower's retrieval
pool (popularity-sampled on a large catalog) and, for buy-again data, the user's earlier items
outside the basket; optionally with the two-tower score as an input."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd
import torch

from training.encode import EncodedCatalog
from training.models import Ranker, RankerConfig, TwoTower
from training.models.negatives import NegativeSampler, history_negatives, retrieval_candidates
from training.models.ranker import RetrievalScore, ranker_loss
from training.models.train import (
    Batch,
    FitConfig,
    basket_items,
    fit,
    has_baskets,
    history_events,
    latest_history_events,
)
from training.steps.config import TrainConfig

BASKET_WIDTH = 48  # items of one basket kept out of its history negatives (longer: the first 48)
HARD_NEGATIVE_MAX_ITEMS = 200_000


def train_ranker(
    cfg: TrainConfig,
    catalog: EncodedCatalog,
    train: pd.DataFrame,
    examples: Batch,
    two_tower: TwoTower,
    item_embeddings: np.ndarray,
    repeat: bool = False,
    exclude_items: np.ndarray | None = None,
) -> tuple[Ranker, dict[str, Any]]:
    """exclude_items: rows never drawn as hard negatives (items that do not exist at training
    time: the cold items of training.evaluate.cold_items)."""
    spec = catalog.spec
    hard, sampled = cfg.ranker_hard_negatives, cfg.ranker_sampled_negatives
    if catalog.n_items > HARD_NEGATIVE_MAX_ITEMS:
        # Hard negatives score every item for every user (1M x 1M at scale: hours on 2 cores);
        # a large catalog's ranker learns from popularity-sampled negatives instead.
        hard, sampled = 0, hard + sampled
    model_cfg = RankerConfig(
        hard_negatives=hard,
        sampled_negatives=sampled,
        repeat_features=repeat,
        history_negatives=cfg.ranker_history_negatives if repeat else 0,
        positive_threshold=cfg.rating.positive_threshold,
        rating_scale=cfg.rating.scale,
        hidden_dims=tuple(cfg.ranker_hidden_dims),
        attention_dim=cfg.ranker_attention_dim,
    )
    retrieval = (
        RetrievalScore(two_tower.user_tower, item_embeddings) if cfg.ranker_uses_retrieval else None
    )
    ranker = Ranker(
        catalog.n_users,
        catalog.n_items,
        spec.profile_cardinalities,
        catalog.item_tags,
        catalog.item_attrs,
        spec.item_cardinalities,
        model_cfg,
        retrieval,
    )
    fit_cfg = FitConfig(
        int(cfg.ranker_epochs or 0),
        cfg.ranker_batch_size,
        cfg.ranker_lr,
        weight_decay=1e-4,
        user_dropout=cfg.user_dropout,
        seed=cfg.seed + 1,
        examples_per_epoch=cfg.examples_per_epoch,
    )
    latest = latest_history_events(catalog, train)
    hard = (
        retrieval_candidates(
            two_tower.user_tower,
            item_embeddings,
            catalog.user_profiles,
            latest.pop("history"),
            train,
            cfg.hard_negative_pool,
            exclude=exclude_items,
            events=latest,
        )
        if model_cfg.hard_negatives > 0
        else np.zeros((catalog.n_users, 1), dtype=np.int64)
    )
    sampler = NegativeSampler(
        hard,
        np.bincount(train["item_index"], minlength=catalog.n_items),
        model_cfg.hard_negatives,
        model_cfg.sampled_negatives,
        seed=cfg.seed + 2,
    )
    use_negatives = model_cfg.hard_negatives + model_cfg.sampled_negatives > 0
    # user_row survives the fit loop's user-id dropout: hard negatives belong to the real user.
    per_item = {
        **examples,
        "items": examples["items"].unsqueeze(1),  # [B] -> [B, N=1]
        "user_row": examples["user_index"].clone(),
    }
    n_history = model_cfg.history_negatives
    if n_history:  # the example's basket (or the item alone): never its own negatives
        per_item["basket"] = (
            torch.from_numpy(basket_items(train, BASKET_WIDTH))
            if has_baskets(train)
            else per_item["items"]
        )
    generator = torch.Generator().manual_seed(cfg.seed + 3)

    def negatives(b: Batch) -> torch.Tensor | None:
        parts = [sampler(b["user_row"])] if use_negatives else []
        if n_history:
            parts.append(history_negatives(b["history"], b["basket"], n_history, generator))
        return torch.cat(parts, dim=1) if parts else None

    info = fit(
        ranker,
        lambda b: ranker_loss(
            ranker,
            b["user_index"],
            b["profile"],
            b["history"],
            b["items"],
            b["ratings"],
            model_cfg.positive_threshold,
            negatives(b),
            history_events(b),
        ),
        per_item,
        fit_cfg,
        desc="ranker",
        progress=cfg.progress,
    )
    return ranker, {
        "model": dataclasses.asdict(model_cfg),
        "fit": dataclasses.asdict(fit_cfg),
        "uses_retrieval_score": retrieval is not None,
        "hard_negative_pool": cfg.hard_negative_pool,
        **info,
    }
