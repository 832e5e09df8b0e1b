"""The one definition of recserve's model features (numpy; imported by training and serving).

Shapes: B = batch, H = FeatureSpec.history_len, P = len(PROFILE_FIELDS), T = number of tags.
Index 0 always means "unknown / padding" in every encoded field.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

PROFILE_FIELDS: tuple[str, ...] = ("age", "gender", "occupation")
DEFAULT_AGE_BOUNDARIES: tuple[int, ...] = (18, 25, 35, 45, 50, 56)
DEFAULT_YEAR_BOUNDARIES: tuple[int, ...] = (1940, 1960, 1970, 1980, 1985, 1990, 1993, 1995, 1997)
SECONDS_PER_DAY = 86_400


@dataclass(frozen=True)
class FeatureSpec:
    """Vocabularies and bucket edges of every encoded feature; stored in manifest.json."""

    history_len: int = 50
    age_boundaries: tuple[int, ...] = DEFAULT_AGE_BOUNDARIES
    genders: tuple[str, ...] = ()
    occupations: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    year_boundaries: tuple[int, ...] = DEFAULT_YEAR_BOUNDARIES
    profile_fields: tuple[str, ...] = field(default=PROFILE_FIELDS)

    @property
    def profile_cardinalities(self) -> tuple[int, ...]:
        """Embedding table sizes per profile field (including the 0 = unknown row)."""
        return (len(self.age_boundaries) + 2, len(self.genders) + 1, len(self.occupations) + 1)

    @property
    def n_year_buckets(self) -> int:
        return len(self.year_boundaries) + 2

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**kwargs)


def _lookup(values: Sequence[str | None], vocab: tuple[str, ...]) -> np.ndarray:
    index = {v: i + 1 for i, v in enumerate(vocab)}
    return np.fromiter((index.get(v or "", 0) for v in values), dtype=np.int64, count=len(values))


def age_bucket(ages: np.ndarray, boundaries: Sequence[int]) -> np.ndarray:
    """Ages (<= 0 = unknown) -> bucket index in 1..len(boundaries)+1, 0 for unknown."""
    ages = np.asarray(ages, dtype=np.int64)
    buckets = np.searchsorted(np.asarray(boundaries), ages, side="right") + 1
    return np.where(ages > 0, buckets, 0).astype(np.int64)


def encode_profiles(
    spec: FeatureSpec,
    ages: Sequence[int] | np.ndarray,
    genders: Sequence[str | None],
    occupations: Sequence[str | None],
) -> np.ndarray:
    """Raw profiles -> int64[B, P] (age bucket, gender index, occupation index)."""
    out = np.zeros((len(genders), len(PROFILE_FIELDS)), dtype=np.int64)
    out[:, 0] = age_bucket(np.asarray(ages, dtype=np.int64), spec.age_boundaries)
    out[:, 1] = _lookup(list(genders), spec.genders)
    out[:, 2] = _lookup(list(occupations), spec.occupations)
    return out


def encode_profile(
    spec: FeatureSpec, age: int, gender: str | None, occupation: str | None
) -> np.ndarray:
    """One raw profile -> int64[P]."""
    return encode_profiles(spec, [age], [gender], [occupation])[0]


def year_buckets(spec: FeatureSpec, years: Sequence[int] | np.ndarray) -> np.ndarray:
    """Release years (<= 0 = unknown) -> int64 bucket in 1..n_year_buckets-1, 0 for unknown."""
    years = np.asarray(years, dtype=np.int64)
    buckets = np.searchsorted(np.asarray(spec.year_boundaries), years, side="right") + 1
    return np.where(years > 0, buckets, 0).astype(np.int64)


def tags_multi_hot(spec: FeatureSpec, item_tags: Sequence[Sequence[str]]) -> np.ndarray:
    """Tag lists -> float32[B, T] multi-hot (unknown tags ignored)."""
    index = {t: i for i, t in enumerate(spec.tags)}
    out = np.zeros((len(item_tags), len(spec.tags)), dtype=np.float32)
    for row, tags in enumerate(item_tags):
        for tag in tags:
            col = index.get(tag)
            if col is not None:
                out[row, col] = 1.0
    return out


def pad_history(recent_first: Sequence[int] | np.ndarray, history_len: int) -> np.ndarray:
    """Item indices, most recent first -> int64[H], truncated or right-padded with 0."""
    out = np.zeros(history_len, dtype=np.int64)
    arr = np.asarray(recent_first, dtype=np.int64)[:history_len]
    out[: arr.size] = arr
    return out


def sliding_histories(
    user_codes: np.ndarray, item_indices: np.ndarray, history_len: int
) -> np.ndarray:
    """History seen *before* each event, for an event log sorted by (user, time).

    user_codes, item_indices: int64[N]. Returns int64[N, H]: row n holds the same user's
    previous items, most recent first, 0-padded. This is exactly what the feature service
    serves for that user at that moment, so training and serving agree.
    """
    n = len(item_indices)
    out = np.zeros((n, history_len), dtype=np.int64)
    user_codes = np.asarray(user_codes)
    item_indices = np.asarray(item_indices, dtype=np.int64)
    for lag in range(1, history_len + 1):
        same_user = np.zeros(n, dtype=bool)
        same_user[lag:] = user_codes[lag:] == user_codes[:-lag]
        out[lag:, lag - 1] = np.where(same_user[lag:], item_indices[:-lag], 0)
    return out


def daily_activity(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One user's events (unix s, value) -> (distinct days ascending int64, value per day)."""
    days = np.asarray(timestamps, dtype=np.int64) // SECONDS_PER_DAY
    uniq, inverse = np.unique(days, return_inverse=True)
    sums = np.zeros(uniq.size, dtype=np.float64)
    np.add.at(sums, inverse, np.asarray(values, dtype=np.float64))
    return uniq.astype(np.int64), sums.astype(np.float32)
