"""Per-user temporal holdout: each user's last `test_fraction` of events (at least one) is test.

Users with a single event keep it in train (nothing would be left to learn them from).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class TemporalSplit:
    """train/test frames in the canonical event schema, each sorted by (timestamp, user_id)."""

    train: pd.DataFrame
    test: pd.DataFrame
    test_fraction: float

    def describe(self) -> dict[str, Any]:
        """The manifest's data.split entry."""
        return {
            "kind": "per_user_temporal_holdout",
            "test_fraction": self.test_fraction,
            "min_test_events_per_user": 1,
            "n_train": len(self.train),
            "n_test": len(self.test),
            "n_test_users": int(self.test["user_id"].nunique()),
        }


def temporal_split(events: pd.DataFrame, test_fraction: float = 0.1) -> TemporalSplit:
    """Split by time within each user: the last ceil(fraction * n) events (>= 1) go to test."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    order = events.sort_values(["user_id", "timestamp"], kind="stable")
    counts = order.groupby("user_id", sort=False)["user_id"].transform("size").to_numpy()
    rank = order.groupby("user_id", sort=False).cumcount().to_numpy()
    n_test = np.maximum(1, np.ceil(counts * test_fraction)).astype(np.int64)
    is_test = (rank >= counts - n_test) & (counts > 1)

    def _time_sorted(frame: pd.DataFrame) -> pd.DataFrame:
        return frame.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)

    return TemporalSplit(_time_sorted(order[~is_test]), _time_sorted(order[is_test]), test_fraction)
