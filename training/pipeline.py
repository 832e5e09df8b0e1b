"""End-to-end training: data -> split -> two-tower + ranker + rating model -> metrics -> ONNX
(parity-checked) -> FAISS index -> content encoder (item text -> tower space, training.content)
-> user-value model -> bundle published under artifacts/<version>. ranker.onnx = the ranker's
p_interact; rater.onnx = the rating model's rating and p_positive (training.models.rating.
ServedRanker.graphs; without ratings, ranker.onnx holds all three as before).

    bundle_dir = build_bundle(TrainConfig(tiny=True))

The served models are the ones trained on the train split (the metrics describe exactly them).
Each step is a function of its own module under training/steps/ (its __init__ lists them);
this module only runs them in order, timed by training.steps.runner.Steps. Importing it sets
nothing: the commands that train call training.steps.runtime.prefer_passive_omp first.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from services.contract.content import CONTENT_ENCODER_FILE
from training import distributed
from training.data import InteractionData
from training.data.builtin import resolve
from training.data.dataset import load_dataset
from training.models.rating import ServedRanker
from training.split import temporal_split
from training.steps import runtime
from training.steps.config import (
    FULL_EPOCHS,
    RATING_ONLY_EPOCHS,
    TINY_EPOCHS,
    TrainConfig,
    evaluation_metrics,
    for_dataset,
)
from training.steps.content import content_encoder
from training.steps.evaluate import evaluate
from training.steps.features import encode, parity_inputs, subset
from training.steps.manifest import trained_fields
from training.steps.publish import publish_bundle
from training.steps.ranker import train_ranker
from training.steps.rating import train_rating
from training.steps.runner import Steps
from training.steps.two_tower import train_user_tower
from training.steps.user_value import train_user_value, value_data

__all__ = [
    "FULL_EPOCHS",
    "RATING_ONLY_EPOCHS",
    "TINY_EPOCHS",
    "Steps",
    "TrainConfig",
    "build_bundle",
    "build_bundle_from_events",
]


def build_bundle(config: TrainConfig) -> Path:
    """Train everything on real data and publish artifacts/<version>; returns the bundle dir.

    The per-user temporal holdout (`config.test_fraction`) is the validation set: the manifest's
    metrics are measured on it and the shipped models never saw it.
    """
    cfg = config.resolved()
    data = load_dataset(cfg.dataset or resolve(cfg.data_dir, "movielens"))
    split = temporal_split(data.events, cfg.test_fraction)
    return build_bundle_from_events(
        split.train,
        data,
        cfg,
        valid=split.test,
        split_info=split.describe(),
        evaluation=evaluation_metrics(cfg.eval_metrics),
    )


def build_bundle_from_events(
    train: pd.DataFrame,
    data: InteractionData,
    config: TrainConfig,
    valid: pd.DataFrame | None = None,
    *,
    split_info: dict[str, Any] | None = None,
    evaluation: dict[str, Any] | None = None,
) -> Path:
    """Train every model on exactly `train` and publish a normal bundle; returns its dir.

    train/valid: events in the canonical schema (training.data.schema). `data` supplies the
    item and user tables (its events only name ids for the vocabularies); `valid` is used only
    to measure the manifest's metrics (nothing is fitted on it). The value model trains on
    `train` too (training.value_step.value_view: money when the dataset has it, else
    engagement). interactions.parquet = `train`.
    `evaluation` (optional) is recorded as the manifest's metrics.evaluation.
    """
    cfg = runtime.start(config)  # resolved; version, torch threads and seed
    steps = Steps(cfg.progress)
    value_events = value_data(data, train, cfg.seed)  # refuses a too-short log before training
    cfg = for_dataset(cfg, data.config)
    with steps("split + features"):
        f = encode(data, train, valid, cfg.history_len)
    with steps("train two-tower"):
        two_tower, two_tower_info = train_user_tower(cfg, f, repeat=data.config.repeat)
        item_embeddings = two_tower.item_embeddings(f.catalog.n_items)
    with steps("train ranker"):
        ranker, ranker_info = train_ranker(
            cfg, f.catalog, f.train_ix, f.examples, two_tower, item_embeddings, data.config.repeat
        )
    if not distributed.is_main():  # rank 0 evaluates, exports and publishes; the others wait
        distributed.barrier()
        return cfg.artifacts_dir / cfg.version
    rating_model, rating_info = train_rating(cfg, data, train, f, steps)
    served = ServedRanker(ranker, rating_model)
    metrics: dict[str, Any] = {}
    if f.valid_ix is not None:
        with steps("evaluate"):
            metrics = evaluate(
                f, two_tower, item_embeddings, ranker, served, train,
                has_rating_model=rating_model is not None,
                like_threshold=data.config.ratings.like_threshold,
                repeat=data.config.repeat, seed=cfg.seed,
            )  # fmt: skip
    if evaluation is not None:
        metrics["evaluation"] = evaluation

    def content_and_value(out: Path, parity: dict[str, float]) -> dict[str, Any]:
        content = content_encoder(cfg, data, f, item_embeddings, out, steps)
        if content is not None:
            parity[CONTENT_ENCODER_FILE] = content["parity"]["max_abs_error"]
        value, metrics["user_value"], parity["user_value.onnx"] = train_user_value(
            cfg, value_events, train, out, steps
        )
        return trained_fields(
            cfg, data, train, valid, split_info, value_events,
            has_rating_model=rating_model is not None, metrics=metrics, value=value,
            content=content, two_tower=two_tower_info, ranker=ranker_info, rating=rating_info,
            seconds=steps.seconds,
        )  # fmt: skip

    bundle_dir = publish_bundle(
        cfg.artifacts_dir,
        cfg.version,
        steps,
        models={"user_tower.onnx": two_tower.user_tower, **served.graphs()},
        parity_inputs=parity_inputs(f.heldout, f.catalog.n_items, cfg.seed),
        export_sample=subset(
            parity_inputs(f.heldout, f.catalog.n_items, cfg.seed + 1), slice(1, 4)
        ),
        item_embeddings=item_embeddings,
        catalog=f.catalog,
        items=data.items,
        users=data.users,
        events=train,
        sections=content_and_value,
    )
    distributed.barrier()
    return bundle_dir
