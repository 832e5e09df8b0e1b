"""The manifest fields a trained bundle adds to training.steps.publish's: where the data came
from and how it was split, the dataset's config, metrics, the value and content sections, and
how the models were trained."""

from __future__ import annotations

from typing import Any

import pandas as pd

from training.data import InteractionData
from training.steps.config import TrainConfig
from training.steps.runtime import TORCH_THREADS


def trained_fields(
    cfg: TrainConfig,
    data: InteractionData,
    train: pd.DataFrame,
    valid: pd.DataFrame | None,
    split_info: dict[str, Any] | None,
    value_data: InteractionData,
    *,
    has_rating_model: bool,
    metrics: dict[str, Any],
    value: dict[str, Any],
    content: dict[str, Any] | None,
    two_tower: dict[str, Any],
    ranker: dict[str, Any],
    rating: dict[str, Any],
    seconds: dict[str, float],
) -> dict[str, Any]:
    """two_tower, ranker, rating: each model's training section; seconds: per step."""
    scale = data.config.ratings
    return {
        "data": {
            "source": data.source,
            "sha256": data.sha256,
            "n_events": data.n_events,
            "split": split_info or supplied_split(train, valid),
            "value_source": value_data.source,
            "value_sha256": value_data.sha256,
        },
        "dataset": data.config.to_json(),
        "rating_model": {"scale": [scale.low, scale.high], "positive": scale.like_threshold}
        if has_rating_model
        else None,
        "metrics": metrics,
        "value": value,
        **({"content": content} if content is not None else {}),
        "training": {
            "config": cfg.to_json(),
            "torch_threads": TORCH_THREADS,
            "two_tower": two_tower,
            # Which user encoder is served (user_tower.onnx), and with "auto" both encoders'
            # validation scores (training.steps.two_tower.train_user_tower).
            "user_encoder": two_tower.get("user_encoder"),
            "ranker": ranker,
            "rating": rating,
            "rating_only": cfg.rating_only,
            "seconds": seconds,
        },
    }


def supplied_split(train: pd.DataFrame, valid: pd.DataFrame | None) -> dict[str, Any]:
    """The manifest's data.split entry for a caller-supplied train (and validation) set."""
    return {
        "kind": "supplied",
        "n_train": len(train),
        "n_valid": 0 if valid is None else len(valid),
        "n_valid_users": 0 if valid is None else int(valid["user_id"].nunique()),
    }
