"""Train the two-tower retrieval model (user tower + item tower, the items' training
popularity as its log prior) on the training examples; with user_encoder "auto", both user
encoders are trained and the better on validation is kept (train_user_tower)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np
import pandas as pd

from training.encode import EncodedCatalog
from training.models import ItemTower, TwoTower, TwoTowerConfig, UserTower
from training.models.train import (
    Batch,
    FitConfig,
    fit,
    has_baskets,
    history_events,
    make_examples,
)
from training.models.two_tower import USER_ENCODERS
from training.steps.config import TrainConfig
from training.steps.evaluate import RETRIEVAL_EVAL_MAX_SCORES, sample_users
from training.steps.features import Features


def model_config(cfg: TrainConfig, encoder: str) -> TwoTowerConfig:
    return TwoTowerConfig(
        embedding_dim=cfg.embedding_dim,
        temperature=cfg.temperature,
        user_encoder=encoder,
        seq_len=cfg.user_seq_len,
        seq_layers=cfg.user_seq_layers,
        seq_dropout=cfg.user_seq_dropout,
        seq_time=cfg.user_seq_time,
        seq_kinds=cfg.user_seq_kinds,
    )


def train_two_tower(
    cfg: TrainConfig,
    catalog: EncodedCatalog,
    train: pd.DataFrame,
    examples: Batch,
    encoder: str | None = None,
) -> tuple[TwoTower, dict[str, Any]]:
    """One two-tower with the given user encoder (None: cfg.user_encoder; "auto" there means
    "mean" here: a caller that trains one tower, such as the cold-item evaluation, gets the
    cheaper encoder; train_user_tower is where "auto" chooses)."""
    encoder = encoder or cfg.user_encoder
    if encoder == "auto":
        encoder = "mean"
    spec = catalog.spec
    model_cfg = model_config(cfg, encoder)
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
        lambda b: model.loss(
            b["user_index"], b["profile"], b["history"], b["items"], **history_events(b)
        ),
        examples,
        fit_cfg,
        desc=f"two-tower ({encoder})",
        progress=cfg.progress,
    )
    return model, {
        "model": dataclasses.asdict(model_cfg),
        "fit": dataclasses.asdict(fit_cfg),
        **info,
    }


def retrieval_metrics(
    model: TwoTower, catalog: EncodedCatalog, train: pd.DataFrame, held: pd.DataFrame,
    *, repeat: bool, seed: int,
) -> dict[str, float]:  # fmt: skip
    """training.metrics.evaluate_retrieval of this model on held-out events (users sampled as
    in the manifest's metrics)."""
    from training.metrics import evaluate_retrieval

    embeddings = model.item_embeddings(catalog.n_items)
    users = sample_users(held, RETRIEVAL_EVAL_MAX_SCORES // catalog.n_items, seed)
    return evaluate_retrieval(model.user_tower, embeddings, catalog, train, users, repeat=repeat)


def holdout_slice(train: pd.DataFrame, fraction: float) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Indexed events sorted by (user, time) -> (fit, held): each user's last basket (with
    baskets), else their last ceil(fraction * n) events; users with one event/basket keep it
    in fit. Order is kept."""
    users = train["user_index"].to_numpy()
    if has_baskets(train):
        orders = train["order_id"].to_numpy()
        last = pd.Series(orders).groupby(users).transform("last").to_numpy()
        n_orders = pd.Series(orders).groupby(users).transform("nunique").to_numpy()
        held = (orders == last) & (n_orders > 1)
    else:
        counts = pd.Series(users).groupby(users).transform("size").to_numpy()
        rank = pd.Series(users).groupby(users).cumcount().to_numpy()
        n_held = np.maximum(1, np.ceil(counts * fraction)).astype(np.int64)
        held = (rank >= counts - n_held) & (counts > 1)
    return train[~held], train[held]


def train_user_tower(
    cfg: TrainConfig, f: Features, *, repeat: bool
) -> tuple[TwoTower, dict[str, Any]]:
    """The two-tower of cfg.user_encoder; "auto": both encoders, the better on validation
    (cfg.encoder_selection_metric; ties go to "mean", the cheaper one). The info's
    "user_encoder" section records the choice and both validation scores."""
    if cfg.user_encoder != "auto":
        model, info = train_two_tower(cfg, f.catalog, f.train_ix, f.examples)
        return model, {**info, "user_encoder": {"mode": cfg.user_encoder,
                                                "served": cfg.user_encoder}}  # fmt: skip
    if f.valid_ix is not None:  # the validation events the manifest's metrics use
        fit_ix, held, examples, source = f.train_ix, f.valid_ix, f.examples, "validation"
    else:  # no validation: a held-out slice of train decides, then the winner is retrained
        fit_ix, held = holdout_slice(f.train_ix, cfg.test_fraction)
        examples = make_examples(f.catalog, fit_ix)
        source = "train holdout (each user's last basket)" if has_baskets(f.train_ix) else (
            f"train holdout (each user's last {cfg.test_fraction:.0%} events)")  # fmt: skip
    skipped = _over_budget(cfg, examples)
    if skipped:  # the mean tower, trained as if asked for; the manifest says why
        model, info = train_two_tower(cfg, f.catalog, f.train_ix, f.examples, "mean")
        return model, {**info, "user_encoder": {"mode": "auto", "served": "mean",
                                                "skipped": skipped}}  # fmt: skip
    models: dict[str, tuple[TwoTower, dict[str, Any]]] = {}
    scores: dict[str, dict[str, float]] = {}
    seconds: dict[str, float] = {}
    for encoder in USER_ENCODERS:
        start = time.perf_counter()
        models[encoder] = train_two_tower(cfg, f.catalog, fit_ix, examples, encoder)
        seconds[encoder] = round(time.perf_counter() - start, 1)
        scores[encoder] = retrieval_metrics(
            models[encoder][0], f.catalog, fit_ix, held, repeat=repeat, seed=cfg.seed
        )
    metric = cfg.encoder_selection_metric
    best = max(USER_ENCODERS, key=lambda e: (scores[e][metric], e == "mean"))
    model, info = models[best]
    if f.valid_ix is None:  # refit on all of train
        start = time.perf_counter()
        model, info = train_two_tower(cfg, f.catalog, f.train_ix, f.examples, best)
        seconds[f"{best} (refit on train)"] = round(time.perf_counter() - start, 1)
    return model, {
        **info,
        "user_encoder": {
            "mode": "auto",
            "served": best,
            "metric": metric,
            "selected_on": source,
            "n_selection_events": len(held),
            "validation": scores,
            "seconds": seconds,
        },
    }


def _over_budget(cfg: TrainConfig, examples: Batch) -> dict[str, str]:
    """{"transformer": why} when "auto" must not train it: no CUDA, and its examples x epochs
    over cfg.auto_cpu_transformer_budget; else {}."""
    budget = cfg.auto_cpu_transformer_budget
    if budget is None:
        return {}
    import torch

    if torch.cuda.is_available():
        return {}
    n = len(examples["items"])
    work = min(n, cfg.examples_per_epoch or n) * int(cfg.retrieval_epochs or 0)
    if work <= budget:
        return {}
    return {"transformer": f"{work:,} examples x epochs on CPU, over the auto budget of "
                           f"{budget:,} (auto_cpu_transformer_budget); --user-encoder "
                           "transformer trains it"}  # fmt: skip
