"""One event schema for every data source, plus the catalog and user tables beside it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

# user_id: str, item_id: str, timestamp: int64 unix seconds, rating: float32 (NaN when the
# source has none), value: float32 (money for purchases; 1.0 per interaction otherwise).
EVENT_COLUMNS: tuple[str, ...] = ("user_id", "item_id", "timestamp", "rating", "value")
ITEM_COLUMNS: tuple[str, ...] = ("item_id", "title", "tags", "year")
USER_COLUMNS: tuple[str, ...] = ("user_id", "age", "gender", "occupation")


@dataclass(frozen=True)
class InteractionData:
    """events sorted by (timestamp, user_id); items/users may be empty (e.g. CDNOW has none)."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    source: str
    sha256: str

    @property
    def n_events(self) -> int:
        return len(self.events)


def make_events(
    user_id: np.ndarray | pd.Series,
    item_id: np.ndarray | pd.Series,
    timestamp: np.ndarray | pd.Series,
    rating: np.ndarray | pd.Series | None = None,
    value: np.ndarray | pd.Series | None = None,
) -> pd.DataFrame:
    """Build an events frame in the canonical schema, sorted by (timestamp, user_id)."""
    n = len(user_id)
    frame = pd.DataFrame(
        {
            "user_id": pd.Series(user_id).astype(str).to_numpy(),
            "item_id": pd.Series(item_id).astype(str).to_numpy(),
            "timestamp": np.asarray(timestamp, dtype=np.int64),
            "rating": np.full(n, np.nan, np.float32)
            if rating is None
            else np.asarray(rating, np.float32),
            "value": np.ones(n, np.float32) if value is None else np.asarray(value, np.float32),
        }
    )
    return frame.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)
