"""The explicit-feedback rating model (training.models.rating_train): ranker.onnx's rating and
p_positive. Skipped when the dataset has no ratings."""

from __future__ import annotations

from typing import Any

import pandas as pd

from training.data import InteractionData
from training.models.rating_train import train_rating_model
from training.steps.config import TrainConfig
from training.steps.features import Features
from training.steps.runner import Steps


def train_rating(
    cfg: TrainConfig, data: InteractionData, train: pd.DataFrame, f: Features, steps: Steps
) -> tuple[Any, dict[str, Any]]:
    """-> (the rating model or None, the manifest's training.rating section)."""
    if data.has_ratings and train["rating"].notna().any():
        with steps("train rating model"):  # explicit-feedback model: small, rank 0 only
            return train_rating_model(f.catalog, f.train_ix, cfg.rating)
    steps.note("rating model: skipped (the dataset has no ratings)")
    return None, {"skipped": "the dataset has no ratings"}
