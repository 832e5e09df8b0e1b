"""The user-value step (training.value_step): its events, checked before any training starts,
and the model trained into the bundle."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from services.contract.features import SECONDS_PER_DAY
from training.data import InteractionData
from training.steps.config import TrainConfig
from training.steps.runner import Steps
from training.value_step import (
    VALUE_MAX_CUSTOMERS,
    check_value_span,
    sample_customers,
    value_section,
    value_view,
)


def value_data(data: InteractionData, train: pd.DataFrame, seed: int) -> InteractionData:
    """The events the value model learns from (training.value_step.value_view), refused early
    (DataError, with the reason) when they span too few days, sampled at scale."""
    out = value_view(data, train)
    check_value_span(out)  # before any training: refuse early, with the reason
    return sample_customers(out, VALUE_MAX_CUSTOMERS, seed)


def train_user_value(
    cfg: TrainConfig, events: InteractionData, train: pd.DataFrame, out: Path, steps: Steps
) -> tuple[dict[str, Any], dict[str, Any], float]:
    """user_value.onnx into out; -> (manifest section, metrics, parity max abs error)."""
    as_of_day = int(train["timestamp"].max()) // SECONDS_PER_DAY
    with steps("train user-value"):
        return value_section(
            events, out, as_of_day, seed=cfg.seed, epochs=cfg.value_epochs, progress=cfg.progress
        )
