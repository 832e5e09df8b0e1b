"""The user-value step of training: which events the value model learns from (the same shop's
log: money in its currency, else engagement), a guard against logs too short for it, a customer
sample at scale, and the manifest section. training.pipeline calls these in this order:

    value_data = value_view(data, train)
    check_value_span(value_data)
    value_data = sample_customers(value_data, VALUE_MAX_CUSTOMERS, seed)
    section, metrics, parity = value_section(value_data, out_dir, as_of_day, seed=..., ...)
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.contract.features import SECONDS_PER_DAY
from training.data.schema import InteractionData

VALUE_MAX_CUSTOMERS = 100_000


def value_view(data: InteractionData, events: pd.DataFrame) -> InteractionData:
    """The events the user-value model learns from. With money (a declared currency): every
    event makes its day active, and only money counts as value, in that currency (the model's
    manifest unit). Without: engagement, every event worth 1 (the model then predicts future
    interactions). The feature service adds live events the same way
    (services.feature.bundle_state.activity_value)."""
    if data.has_money:
        return dataclasses.replace(data, events=events.reset_index(drop=True))
    return dataclasses.replace(
        data, events=events.assign(value=np.float32(1.0)).reset_index(drop=True)
    )


def check_value_span(value_data: InteractionData) -> None:
    from training.data.contract import DataError
    from training.value.protocol import MIN_SPAN_DAYS

    stamps = value_data.events["timestamp"]
    days = (int(stamps.max()) - int(stamps.min())) / SECONDS_PER_DAY if len(stamps) else 0.0
    if days < MIN_SPAN_DAYS:
        raise DataError([
            f"{value_data.source}: the training events span {days:.1f} days; the user-value "
            f"model needs at least {MIN_SPAN_DAYS} (a calibration period and a holdout)"
        ])  # fmt: skip


def value_section(
    value_data: InteractionData,
    out_dir: Path,
    as_of_day: int,
    *,
    seed: int,
    epochs: int | None,
    progress: bool,
) -> tuple[dict[str, Any], dict[str, Any], float]:
    from training.value import build_value_model  # owned by the user-value model
    from training.value.protocol import protocol_for

    horizon_weeks = max(1, value_data.config.value_horizon_days // 7)
    result = build_value_model(
        value_data,
        out_dir,
        seed=seed,
        epochs=epochs,
        progress=progress,
        protocol=protocol_for(value_data.events, value_data.source, horizon_weeks),
    )
    section = dict(result.manifest_section)
    parity = getattr(result, "parity_max_abs_error", section.get("parity_max_abs_error"))
    section["model_as_of_day"] = section.get("as_of_day")
    # The end of the shipped event log. Serving scores as of the request's day (0 = today);
    # this only tells the scorer how far past the data it runs (docs/user_value.md).
    section["as_of_day"] = as_of_day
    return section, dict(result.metrics), float(parity)


def sample_customers(data: InteractionData, max_users: int, seed: int) -> InteractionData:
    """The value model learns from at most max_users customers' logs (all their events); it
    then scores every user. 1M customers x 18 training windows would not train in an hour."""
    users = data.events["user_id"].unique()
    if users.size <= max_users:
        return data
    keep = np.random.default_rng(seed).choice(users, size=max_users, replace=False)
    events = data.events[data.events["user_id"].isin(keep)].reset_index(drop=True)
    return dataclasses.replace(data, events=events, source=f"{data.source} (sample)")
