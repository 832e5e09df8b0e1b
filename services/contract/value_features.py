"""User-value features: the one definition shared by training (training.value) and serving
(services.uservalue). numpy only.

Input per user: distinct active days (int64 days since 1970-01-01, ascending) and the value per
day (float32, money or engagement units), as served in UserFeatures.activity_days/_values.
Only days <= as_of_day count. Time is in weeks. Output: float32[F] per user, [B, F] for a batch,
columns named by VALUE_FEATURE_NAMES.

Definitions (n = active days <= as_of_day, first/last = first and last of them):
    frequency       n - 1 (repeat active days; the BG/NBD "x")
    recency         weeks from first to last active day (BG/NBD "t_x")
    T               weeks from first active day to as_of_day
    weeks_since     T - recency
    monetary        mean value of the repeat days (0 when frequency = 0)
    gap mean / std  of the weeks between consecutive active days (0 with fewer than 2 days)
    days_Nw         active days in the last N weeks, i.e. day > as_of_day - 7N
    trend_13w       log1p(52 * repeat rate in the last 13 weeks) - log1p(52 * overall repeat rate)
Counts, durations and money are log1p-transformed (negative values are clipped to 0 first).
A user with no activity gives the all-zero vector (has_activity = 0): scored as segment NEW.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

DAYS_PER_WEEK = 7.0
RECENT_WINDOWS_WEEKS: tuple[int, ...] = (4, 13, 26)
TREND_WINDOW_WEEKS = 13

VALUE_FEATURE_NAMES: tuple[str, ...] = (
    "has_activity",
    "log_frequency",
    "log_recency_weeks",
    "log_t_weeks",
    "log_weeks_since_last",
    "recency_ratio",
    "log_repeat_rate_per_year",
    "log_monetary",
    "log_first_value",
    "log_mean_value",
    "log_max_value",
    "log_gap_mean_weeks",
    "log_gap_std_weeks",
    "log_overdue",
    *(f"log_days_{w}w" for w in RECENT_WINDOWS_WEEKS),
    f"log_value_{TREND_WINDOW_WEEKS}w",
    f"trend_{TREND_WINDOW_WEEKS}w",
)
N_VALUE_FEATURES = len(VALUE_FEATURE_NAMES)


def _log1p(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.maximum(x, 0.0))


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    out = np.zeros_like(num, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def value_features_flat(
    owner: np.ndarray, days: np.ndarray, values: np.ndarray, n_users: int, as_of_day: int
) -> np.ndarray:
    """Vectorised core. owner int64[N] in 0..n_users-1, days int64[N], values float[N], with
    rows sorted by (owner, day) and days distinct per owner. Returns float32[n_users, F]."""
    owner = np.asarray(owner, dtype=np.int64)
    days = np.asarray(days, dtype=np.int64)
    values = np.asarray(values, dtype=np.float64)
    keep = days <= as_of_day
    owner, days, values = owner[keep], days[keep], values[keep]

    def per_user(weights: np.ndarray | None = None) -> np.ndarray:
        return np.bincount(owner, weights=weights, minlength=n_users).astype(np.float64)

    n = per_user()
    active = n > 0
    is_first = np.ones(owner.size, dtype=bool)
    is_first[1:] = owner[1:] != owner[:-1]
    is_last = np.ones(owner.size, dtype=bool)
    is_last[:-1] = owner[1:] != owner[:-1]
    first_day = np.zeros(n_users)
    last_day = np.zeros(n_users)
    first_value = np.zeros(n_users)
    first_day[owner[is_first]] = days[is_first]
    last_day[owner[is_last]] = days[is_last]
    first_value[owner[is_first]] = values[is_first]
    max_value = np.zeros(n_users)
    np.maximum.at(max_value, owner, np.maximum(values, 0.0))

    frequency = np.maximum(n - 1.0, 0.0)
    recency = np.where(active, (last_day - first_day) / DAYS_PER_WEEK, 0.0)
    t_weeks = np.where(active, (as_of_day - first_day) / DAYS_PER_WEEK, 0.0)
    since_last = t_weeks - recency
    sum_value = per_user(values)
    monetary = _safe_div(sum_value - first_value, frequency)
    mean_value = _safe_div(sum_value, n)

    gaps = np.zeros(owner.size)
    gaps[1:] = (days[1:] - days[:-1]) / DAYS_PER_WEEK
    gaps[is_first] = 0.0
    gap_mean = _safe_div(recency, frequency)
    gap_sq_mean = _safe_div(per_user(gaps * gaps), frequency)
    gap_std = np.sqrt(np.maximum(gap_sq_mean - gap_mean * gap_mean, 0.0))
    overdue = _safe_div(since_last, gap_mean)

    repeat_rate = _safe_div(frequency, np.maximum(t_weeks, 1.0))
    recent = [
        per_user((days > as_of_day - DAYS_PER_WEEK * w).astype(np.float64))
        for w in RECENT_WINDOWS_WEEKS
    ]
    in_trend = days > as_of_day - DAYS_PER_WEEK * TREND_WINDOW_WEEKS
    value_trend = per_user(np.where(in_trend, values, 0.0))
    repeats_trend = per_user((in_trend & ~is_first).astype(np.float64))
    trend_rate = _safe_div(repeats_trend, np.clip(t_weeks, 1.0, TREND_WINDOW_WEEKS))
    trend = np.where(active, _log1p(52.0 * trend_rate) - _log1p(52.0 * repeat_rate), 0.0)

    columns = [
        active.astype(np.float64),
        _log1p(frequency),
        _log1p(recency),
        _log1p(t_weeks),
        _log1p(since_last),
        _safe_div(recency, t_weeks),
        _log1p(52.0 * repeat_rate),
        _log1p(monetary),
        _log1p(first_value),
        _log1p(mean_value),
        _log1p(max_value),
        _log1p(gap_mean),
        _log1p(gap_std),
        _log1p(overdue),
        *(_log1p(r) for r in recent),
        _log1p(value_trend),
        trend,
    ]
    out = np.stack(columns, axis=1).astype(np.float32)
    out[~active] = 0.0
    return out


# Below this many active days, one user's features are computed in plain Python (about 60 numpy
# calls on a handful of values cost more than the arithmetic itself).
SCALAR_MAX_DAYS = 64


def _log1p_one(x: float) -> float:
    return math.log1p(x) if x > 0.0 else 0.0


def value_features_one(days: np.ndarray, values: np.ndarray, as_of_day: int) -> np.ndarray:
    """value_features_flat for one user, in plain Python: the same definitions, the same order of
    float64 operations, float32[F]. For a request's user (the scorer's cache missed), where the
    vectorised form's fixed cost per numpy call dominates."""
    day_list = np.asarray(days, dtype=np.int64).tolist()
    value_list = np.asarray(values, dtype=np.float64).tolist()
    kept = [(d, v) for d, v in zip(day_list, value_list, strict=True) if d <= as_of_day]
    if not kept:
        return np.zeros(N_VALUE_FEATURES, dtype=np.float32)
    n = len(kept)
    first_day, first_value = kept[0]
    last_day = kept[-1][0]
    max_value = 0.0
    sum_value = 0.0
    gap_sq = 0.0
    previous = first_day
    for i, (day, value) in enumerate(kept):
        max_value = max(max_value, max(value, 0.0))
        sum_value += value
        gap = (day - previous) / DAYS_PER_WEEK if i else 0.0
        gap_sq += gap * gap
        previous = day
    frequency = max(n - 1.0, 0.0)
    recency = (last_day - first_day) / DAYS_PER_WEEK
    t_weeks = (as_of_day - first_day) / DAYS_PER_WEEK
    since_last = t_weeks - recency
    monetary = (sum_value - first_value) / frequency if frequency > 0 else 0.0
    mean_value = sum_value / n
    gap_mean = recency / frequency if frequency > 0 else 0.0
    gap_sq_mean = gap_sq / frequency if frequency > 0 else 0.0
    gap_std = math.sqrt(max(gap_sq_mean - gap_mean * gap_mean, 0.0))
    overdue = since_last / gap_mean if gap_mean > 0 else 0.0
    repeat_rate = frequency / max(t_weeks, 1.0)
    recent = [
        float(sum(1 for day, _ in kept if day > as_of_day - DAYS_PER_WEEK * w))
        for w in RECENT_WINDOWS_WEEKS
    ]
    trend_start = as_of_day - DAYS_PER_WEEK * TREND_WINDOW_WEEKS
    value_trend = 0.0
    repeats_trend = 0.0
    for i, (day, value) in enumerate(kept):
        in_trend = day > trend_start
        value_trend += value if in_trend else 0.0
        repeats_trend += 1.0 if in_trend and i else 0.0
    trend_rate = repeats_trend / min(max(t_weeks, 1.0), float(TREND_WINDOW_WEEKS))
    trend = _log1p_one(52.0 * trend_rate) - _log1p_one(52.0 * repeat_rate)
    columns = [
        1.0,
        _log1p_one(frequency),
        _log1p_one(recency),
        _log1p_one(t_weeks),
        _log1p_one(since_last),
        recency / t_weeks if t_weeks > 0 else 0.0,
        _log1p_one(52.0 * repeat_rate),
        _log1p_one(monetary),
        _log1p_one(first_value),
        _log1p_one(mean_value),
        _log1p_one(max_value),
        _log1p_one(gap_mean),
        _log1p_one(gap_std),
        _log1p_one(overdue),
        *(_log1p_one(r) for r in recent),
        _log1p_one(value_trend),
        trend,
    ]
    return np.asarray(columns, dtype=np.float32)


def value_features_batch(
    activities: Sequence[tuple[np.ndarray, np.ndarray]], as_of_day: int
) -> np.ndarray:
    """[(days int64[n_b], values float32[n_b]), ...] per user -> float32[B, F]. One user with
    few active days takes the plain-Python path (value_features_one)."""
    if len(activities) == 1 and len(activities[0][0]) <= SCALAR_MAX_DAYS:
        return value_features_one(*activities[0], as_of_day)[None, :]
    lengths = np.fromiter((len(d) for d, _ in activities), dtype=np.int64, count=len(activities))
    owner = np.repeat(np.arange(len(activities), dtype=np.int64), lengths)
    if lengths.sum() == 0:
        return np.zeros((len(activities), N_VALUE_FEATURES), dtype=np.float32)
    days = np.concatenate([np.asarray(d, dtype=np.int64) for d, _ in activities])
    values = np.concatenate([np.asarray(v, dtype=np.float64) for _, v in activities])
    return value_features_flat(owner, days, values, len(activities), as_of_day)


def value_features(days: np.ndarray, values: np.ndarray, as_of_day: int) -> np.ndarray:
    """One user's activity -> float32[F]."""
    return value_features_batch([(days, values)], as_of_day)[0]
