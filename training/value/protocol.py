"""Calibration / holdout protocol for the user-value model, labels, and honest training windows.

One customer-day is one transaction. For CDNOW (the classic benchmark):
    calibration 1997-01-01 .. 1997-09-30 (features), holdout 1997-10-01 .. 1998-06-30 (labels),
    39 weeks each.
Labels per customer for a window (cut_off, cut_off + 7 * horizon_weeks]: repeat transactions
(active days), spend (sum of value), any purchase.

Honest training: the holdout labels we report on are never fitted. Training examples come from
cut-offs *inside* the calibration period whose label windows also end inside it
(see `training_windows`). CDNOW's calibration is as long as its holdout, so no in-calibration
window can be 39 weeks long: the model predicts a per-customer purchase rate that ages
with the customer (training.value.model), trained on windows of 4..26 weeks, and the exported graph
evaluates that curve at the 39-week horizon.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.contract.features import SECONDS_PER_DAY

DAYS_PER_WEEK = 7
# The shortest event log a value model can learn from: a calibration period with at least one
# week-long training window before it, and a holdout after it.
MIN_SPAN_DAYS = 28
LABEL_HORIZONS_WEEKS: tuple[int, ...] = (4, 8, 13, 26)
CUT_OFF_WEEKS_BEFORE_END: tuple[int, ...] = (4, 8, 13, 17, 21, 26)


def _day(iso: str) -> int:
    return int(pd.Timestamp(iso, tz="UTC").value // 1_000_000_000 // SECONDS_PER_DAY)


def _iso(day: int) -> str:
    return str((pd.Timestamp(0, tz="UTC") + pd.Timedelta(days=day)).date())


@dataclass(frozen=True)
class ValueProtocol:
    """Days are days since 1970-01-01 (UTC); as_of_day is the last calibration day (inclusive)."""

    calibration_start_day: int
    as_of_day: int
    horizon_weeks: int = 39

    @property
    def holdout_end_day(self) -> int:
        return self.as_of_day + DAYS_PER_WEEK * self.horizon_weeks

    @property
    def calibration_weeks(self) -> float:
        return (self.as_of_day + 1 - self.calibration_start_day) / DAYS_PER_WEEK

    def describe(self) -> dict[str, object]:
        return {
            "calibration": f"{_iso(self.calibration_start_day)}..{_iso(self.as_of_day)}",
            "holdout": f"{_iso(self.as_of_day + 1)}..{_iso(self.holdout_end_day)}",
            "horizon_weeks": self.horizon_weeks,
        }


CDNOW_PROTOCOL = ValueProtocol(_day("1997-01-01"), _day("1997-09-30"), 39)


def protocol_for(events: pd.DataFrame, source: str, horizon_weeks: int = 39) -> ValueProtocol:
    """CDNOW's fixed protocol; for any other log the last `horizon_weeks` (at most half the
    span) are the holdout."""
    if source.startswith("cdnow"):
        return CDNOW_PROTOCOL
    days = events["timestamp"].to_numpy(np.int64) // SECONDS_PER_DAY
    first, last = int(days.min()), int(days.max())
    horizon = max(1, min(horizon_weeks, (last - first + 1) // (2 * DAYS_PER_WEEK)))
    return ValueProtocol(first, last - DAYS_PER_WEEK * horizon, horizon)


@dataclass(frozen=True)
class CustomerDays:
    """Customer-day transactions, rows sorted by (owner, day), days distinct per owner."""

    user_ids: np.ndarray  # str[U]
    owner: np.ndarray  # int64[N] row into user_ids
    days: np.ndarray  # int64[N]
    values: np.ndarray  # float32[N], total value of that day

    @property
    def n_users(self) -> int:
        return len(self.user_ids)


def customer_days(events: pd.DataFrame) -> CustomerDays:
    """Same aggregation as services.contract.features.daily_activity, for every user at once."""
    frame = pd.DataFrame(
        {
            "user_id": events["user_id"].astype(str).to_numpy(),
            "day": events["timestamp"].to_numpy(np.int64) // SECONDS_PER_DAY,
            "value": events["value"].to_numpy(np.float64),
        }
    )
    daily = frame.groupby(["user_id", "day"], sort=True)["value"].sum().reset_index()
    codes, uniques = pd.factorize(daily["user_id"], sort=True)
    return CustomerDays(
        user_ids=np.asarray(uniques, dtype=str),
        owner=codes.astype(np.int64),
        days=daily["day"].to_numpy(np.int64),
        values=daily["value"].to_numpy(np.float64).astype(np.float32),
    )


@dataclass(frozen=True)
class WindowLabels:
    """Per-user labels for the window (cut_off_day, cut_off_day + 7 * horizon_weeks]."""

    transactions: np.ndarray  # float32[U] active days in the window
    spend: np.ndarray  # float32[U]
    horizon_weeks: float

    @property
    def any_purchase(self) -> np.ndarray:
        return (self.transactions > 0).astype(np.float32)


def window_labels(data: CustomerDays, cut_off_day: int, horizon_weeks: float) -> WindowLabels:
    end = cut_off_day + DAYS_PER_WEEK * horizon_weeks
    inside = (data.days > cut_off_day) & (data.days <= end)
    count = np.bincount(data.owner[inside], minlength=data.n_users)
    spend = np.bincount(data.owner[inside], weights=data.values[inside], minlength=data.n_users)
    return WindowLabels(count.astype(np.float32), spend.astype(np.float32), float(horizon_weeks))


def active_by(data: CustomerDays, day: int) -> np.ndarray:
    """bool[U]: the user has at least one active day <= day (a customer at that cut-off)."""
    return np.bincount(data.owner[data.days <= day], minlength=data.n_users) > 0


def training_windows(protocol: ValueProtocol) -> list[tuple[int, int]]:
    """(cut_off_day, horizon_weeks) pairs whose label windows end by protocol.as_of_day.

    Cut-offs lie 4..26 weeks before the calibration end (at most 2/3 of the calibration, so
    every cut-off leaves some history); each takes the label horizons that fit plus the longest
    one that fits. Several horizons per cut-off let the model learn how purchasing decays."""
    max_back = int(protocol.calibration_weeks * 2 / 3)
    windows: set[tuple[int, int]] = set()
    for back in CUT_OFF_WEEKS_BEFORE_END:
        if back > max_back:
            continue
        cut_off = protocol.as_of_day - DAYS_PER_WEEK * back
        for horizon in (*LABEL_HORIZONS_WEEKS, back):
            if horizon <= back:
                windows.add((cut_off, horizon))
    if not windows:  # very short logs: one window covering the last half of the calibration
        back = max(1, int(protocol.calibration_weeks // 2))
        windows.add((protocol.as_of_day - DAYS_PER_WEEK * back, back))
    return sorted(windows)
