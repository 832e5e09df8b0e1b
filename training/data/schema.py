"""One event schema for every data source, plus the catalog and user tables beside it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from training.data.contract import DatasetConfig

# user_id: str, item_id: str, timestamp: int64 unix seconds, rating: float32 (NaN when the
# source has none), value: float32 (money when the dataset has money, else 1.0 per interaction),
# event_type: str ("" when the source has none), quantity: float32 (NaN when absent),
# weight: float32 (implicit-feedback weight of the event type, dataset.toml [event_weights]),
# order_id: str (the basket / order an event belongs to; "" when the source has none).
EVENT_COLUMNS: tuple[str, ...] = (
    "user_id", "item_id", "timestamp", "rating", "value", "event_type", "quantity", "weight",
    "order_id",
)  # fmt: skip


@dataclass(frozen=True)
class InteractionData:
    """events sorted by (timestamp, user_id); items/users may be empty (e.g. CDNOW has none).

    items: item_id plus optional title, description, tags (list[str]), price, available and the
    declared attributes of `config.items`; users: user_id plus those of `config.users`."""

    events: pd.DataFrame
    items: pd.DataFrame
    users: pd.DataFrame
    source: str
    sha256: str
    config: DatasetConfig = field(default_factory=DatasetConfig)
    # Whether the events carry money (a value column in the declared currency). None: whenever
    # a currency is declared (the built-in loaders); a shop may declare one for prices only.
    events_have_money: bool | None = None

    @property
    def has_ratings(self) -> bool:
        return bool(self.events["rating"].notna().any()) if len(self.events) else False

    @property
    def has_money(self) -> bool:
        """Money in the events: user value is then spend in the declared currency."""
        if self.events_have_money is not None:
            return self.events_have_money
        return self.config.currency is not None

    @property
    def n_events(self) -> int:
        return len(self.events)


def make_events(
    user_id: np.ndarray | pd.Series,
    item_id: np.ndarray | pd.Series,
    timestamp: np.ndarray | pd.Series,
    rating: np.ndarray | pd.Series | None = None,
    value: np.ndarray | pd.Series | None = None,
    *,
    event_type: np.ndarray | pd.Series | None = None,
    quantity: np.ndarray | pd.Series | None = None,
    weight: np.ndarray | pd.Series | None = None,
    order_id: np.ndarray | pd.Series | None = None,
) -> pd.DataFrame:
    """Build an events frame in the canonical schema, sorted by (timestamp, user_id)."""
    n = len(user_id)

    def text(values: np.ndarray | pd.Series) -> pd.Series:  # Arrow-backed: 20M ids stay compact
        return pd.Series(values).astype(str).reset_index(drop=True)

    frame = pd.DataFrame(
        {
            "user_id": text(user_id),
            "item_id": text(item_id),
            "timestamp": np.asarray(timestamp, dtype=np.int64),
            "rating": np.full(n, np.nan, np.float32)
            if rating is None
            else np.asarray(rating, np.float32),
            "value": np.ones(n, np.float32) if value is None else np.asarray(value, np.float32),
            "event_type": text(np.full(n, "", object) if event_type is None else event_type),
            "quantity": np.full(n, np.nan, np.float32)
            if quantity is None
            else np.asarray(quantity, np.float32),
            "weight": np.ones(n, np.float32) if weight is None else np.asarray(weight, np.float32),
            "order_id": np.full(n, "", object)
            if order_id is None
            else pd.Series(order_id).fillna("").astype(str).to_numpy(dtype=object),
        }
    )
    return frame.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)
