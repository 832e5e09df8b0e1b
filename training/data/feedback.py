"""Logged feedback (the feature service's event log) as training data for the next retrain.

    feedback, end = read_feedback(Path("state/feature-log"))   # canonical event frame
    plan = plan_retrain(load_dataset(...), feedback, end)       # train / valid / manifest entry

Canonical schema (training.data.schema): rating is the event's rating for rating events and NaN
otherwise; event_type is the event's kind; value is the money of a purchase and 0 for any other
event when the base dataset has money, else 1.0 per event (as the dataset loader and the feature
store's activity counters define it). Every logged event goes into
train: the validation set stays the base data's per-user temporal holdout, so metrics remain
comparable between retrains. The new bundle's manifest records the log position it covers
(data.split.feedback_log); the feature service then replays only the log after it.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.contract.types import EventKind
from services.feature.eventlog import LogPosition, read_events
from services.feature.snapshot import BUNDLE_LOG_KEY
from training.data.schema import InteractionData, make_events


def read_feedback(
    log_dir: Path, start: LogPosition | None = None
) -> tuple[pd.DataFrame, LogPosition | None]:
    """Every logged event (from `start`) in the canonical schema, and the end position read."""
    users: list[str] = []
    items: list[str] = []
    stamps: list[int] = []
    ratings: list[float] = []
    values: list[float] = []
    kinds: list[str] = []
    end: LogPosition | None = None
    for batch_end, batch in read_events(Path(log_dir), start):
        end = batch_end
        for e in batch:
            users.append(e.user_id)
            items.append(e.item_id)
            stamps.append(e.timestamp)
            ratings.append(e.rating if e.kind is EventKind.RATING else np.nan)
            values.append(e.value if e.kind is EventKind.PURCHASE else 0.0)
            kinds.append(e.kind.value)
    frame = make_events(
        np.asarray(users, dtype=object),
        np.asarray(items, dtype=object),
        np.asarray(stamps, dtype=np.int64),
        rating=np.asarray(ratings, dtype=np.float32),
        value=np.asarray(values, dtype=np.float32),
        event_type=np.asarray(kinds, dtype=object),
    )
    return frame, end


@dataclass(frozen=True)
class RetrainPlan:
    data: InteractionData  # base tables; events = base + kept feedback (for the vocabularies)
    train: pd.DataFrame
    valid: pd.DataFrame
    split_info: dict[str, Any]


def plan_retrain(
    base: InteractionData,
    feedback: pd.DataFrame,
    end: LogPosition | None,
    test_fraction: float = 0.1,
) -> RetrainPlan:
    """Base temporal split + all feedback on known items in train. Feedback on items missing
    from the catalog is dropped (no tags or title to serve them with); new users are kept."""
    from training.split import temporal_split

    catalog = base.items["item_id"] if len(base.items) else base.events["item_id"]
    known = feedback["item_id"].isin(set(catalog.astype(str)))
    kept = feedback[known]
    if not base.has_money:  # engagement: every event counts one, as in the dataset itself
        kept = kept.assign(value=np.float32(1.0))
    split = temporal_split(base.events, test_fraction)
    train = _sorted(pd.concat([split.train, kept], ignore_index=True))
    digest = hashlib.sha256(base.sha256.encode())
    digest.update(pd.util.hash_pandas_object(kept, index=False).to_numpy().tobytes())
    data = dataclasses.replace(
        base,
        events=_sorted(pd.concat([base.events, kept], ignore_index=True)),
        source=f"{base.source}+feedback",
        sha256=digest.hexdigest(),
    )
    info = {
        **split.describe(),
        "n_train": len(train),
        "feedback_events": len(kept),
        "feedback_dropped_unknown_items": int((~known).sum()),
    }
    if end is not None:
        info[BUNDLE_LOG_KEY] = {"segment": end.segment, "offset": end.offset}
    return RetrainPlan(data, train, split.test, info)


def _sorted(events: pd.DataFrame) -> pd.DataFrame:
    return events.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)


def retrain(data_dir: Path, log_dir: Path, config: Any) -> Path:
    """The dataset (config.dataset, default the built-in MovieLens) + the logged feedback -> a
    new bundle (training.pipeline.TrainConfig)."""
    from training.data.builtin import resolve
    from training.data.dataset import load_dataset
    from training.pipeline import build_bundle_from_events

    feedback, end = read_feedback(log_dir)
    base = load_dataset(config.dataset or resolve(Path(data_dir), "movielens"))
    plan = plan_retrain(base, feedback, end)
    cfg = config.resolved()
    if cfg.progress:
        print(
            f"[retrain] {len(feedback)} logged events up to {tuple(end) if end else None}; "
            f"{plan.split_info['feedback_events']} on known items go to train"
        )
    return build_bundle_from_events(
        plan.train, plan.data, cfg, valid=plan.valid, split_info=plan.split_info
    )
