"""The one definition of recserve's model features (numpy; imported by training and serving).

Shapes: B = batch, H = FeatureSpec.history_len, P = profile fields (declared user attributes),
A = declared item attributes, T = number of tags.
Index 0 always means "unknown / padding" in every encoded field.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SECONDS_PER_DAY = 86_400
CATEGORICAL, NUMERIC = "categorical", "numeric"
# A side with no declared attributes still feeds one all-zero field, so the ONNX graphs keep
# the same inputs (a [B, 0] input would be dropped by the exporter).
NO_FIELD_CARDINALITIES: tuple[int, ...] = (1,)


@dataclass(frozen=True)
class FieldSpec:
    """One declared user or item attribute and its encoding (0 = unknown / missing).

    categorical: value -> 1 + its position in `values`; numeric: float -> bucket
    1..len(boundaries)+1 by `boundaries` (searchsorted right), NaN -> 0."""

    name: str
    kind: str
    values: tuple[str, ...] = ()
    boundaries: tuple[float, ...] = ()

    @property
    def cardinality(self) -> int:
        return len(self.values) + 1 if self.kind == CATEGORICAL else len(self.boundaries) + 2

    def encode(self, column: Sequence[Any] | np.ndarray) -> np.ndarray:
        """Raw values -> int64[B] codes."""
        if self.kind == CATEGORICAL:
            texts = [v if isinstance(v, str) else ("" if v is None else str(v)) for v in column]
            return _lookup(texts, self.values)
        numbers = np.asarray(
            [np.nan if v is None or v == "" else v for v in column], dtype=np.float64
        )
        buckets = np.searchsorted(np.asarray(self.boundaries), numbers, side="right") + 1
        return np.where(np.isnan(numbers), 0, buckets).astype(np.int64)

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "kind": self.kind, "values": list(self.values),
                "boundaries": list(self.boundaries)}  # fmt: skip

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FieldSpec:
        return cls(data["name"], data["kind"], tuple(data.get("values", ())),
                   tuple(float(b) for b in data.get("boundaries", ())))  # fmt: skip


@dataclass(frozen=True)
class FeatureSpec:
    """Vocabularies and bucket edges of every encoded feature; stored in manifest.json.

    user_fields -> the profile input (int64[B, P]); item_fields -> the item attribute table
    (int64[I, A]); tags -> the multi-hot tag table (float32[I, T]) and the tag filters."""

    history_len: int = 50
    tags: tuple[str, ...] = ()
    user_fields: tuple[FieldSpec, ...] = ()
    item_fields: tuple[FieldSpec, ...] = ()

    @property
    def profile_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.user_fields) or ("none",)

    @property
    def profile_cardinalities(self) -> tuple[int, ...]:
        """Embedding table sizes per profile field (including the 0 = unknown row)."""
        return tuple(f.cardinality for f in self.user_fields) or NO_FIELD_CARDINALITIES

    @property
    def item_cardinalities(self) -> tuple[int, ...]:
        """Embedding table sizes per item attribute (including the 0 = unknown row)."""
        return tuple(f.cardinality for f in self.item_fields) or NO_FIELD_CARDINALITIES

    def to_json(self) -> dict[str, Any]:
        return {
            "history_len": self.history_len,
            "tags": list(self.tags),
            "user_fields": [f.to_json() for f in self.user_fields],
            "item_fields": [f.to_json() for f in self.item_fields],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> FeatureSpec:
        if "user_fields" not in data:
            return _legacy_spec(data)
        return cls(
            history_len=int(data["history_len"]),
            tags=tuple(data.get("tags", ())),
            user_fields=tuple(FieldSpec.from_json(f) for f in data["user_fields"]),
            item_fields=tuple(FieldSpec.from_json(f) for f in data.get("item_fields", ())),
        )


# Bundles written before the data contract (schema of 2026-11) spelled MovieLens' fields out.
LEGACY_AGE_BOUNDARIES: tuple[int, ...] = (18, 25, 35, 45, 50, 56)
LEGACY_YEAR_BOUNDARIES: tuple[int, ...] = (1940, 1960, 1970, 1980, 1985, 1990, 1993, 1995, 1997)


def _legacy_spec(data: dict[str, Any]) -> FeatureSpec:
    def edges(key: str, default: tuple[int, ...]) -> tuple[float, ...]:
        return tuple(float(b) for b in data.get(key, default))

    return FeatureSpec(
        history_len=int(data.get("history_len", 50)),
        tags=tuple(data.get("tags", ())),
        user_fields=(
            FieldSpec("age", NUMERIC, boundaries=edges("age_boundaries", LEGACY_AGE_BOUNDARIES)),
            FieldSpec("gender", CATEGORICAL, values=tuple(data.get("genders", ()))),
            FieldSpec("occupation", CATEGORICAL, values=tuple(data.get("occupations", ()))),
        ),
        item_fields=(
            FieldSpec("year", NUMERIC, boundaries=edges("year_boundaries", LEGACY_YEAR_BOUNDARIES)),
        ),
    )


def _lookup(values: Sequence[str | None], vocab: tuple[str, ...]) -> np.ndarray:
    index = {v: i + 1 for i, v in enumerate(vocab)}
    return np.fromiter((index.get(v or "", 0) for v in values), dtype=np.int64, count=len(values))


def _encode_fields(
    fields: tuple[FieldSpec, ...], table: Mapping[str, Sequence[Any] | np.ndarray], n: int
) -> np.ndarray:
    out = np.zeros((n, max(1, len(fields))), dtype=np.int64)
    for i, spec in enumerate(fields):
        if spec.name in table:
            out[:, i] = spec.encode(table[spec.name])
    return out


def encode_profiles(
    spec: FeatureSpec, table: Mapping[str, Sequence[Any] | np.ndarray], n: int
) -> np.ndarray:
    """Raw user attributes (column name -> n values) -> int64[n, P]; absent columns are 0."""
    return _encode_fields(spec.user_fields, table, n)


def encode_item_attributes(
    spec: FeatureSpec, table: Mapping[str, Sequence[Any] | np.ndarray], n: int
) -> np.ndarray:
    """Raw item attributes (column name -> n values) -> int64[n, A]; absent columns are 0."""
    return _encode_fields(spec.item_fields, table, n)


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
    user_codes: np.ndarray,
    item_indices: np.ndarray,
    history_len: int,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """History seen *before* each event, for an event log sorted by (user, time).

    user_codes, item_indices: int64[N]. Returns int64[N, H] (or int64[R, H] for the given
    `rows` only, so a training loop can build each batch's histories instead of holding N x H):
    row n holds the same user's previous items, most recent first, 0-padded. This is exactly
    what the feature service serves for that user at that moment, so training and serving agree.
    """
    items = np.asarray(item_indices, dtype=np.int64)
    return sliding_values(user_codes, items, history_len, rows)


# -- What happened, and when: the history's event kinds and ages --------------------------------
# A history entry is an item plus the event that put it there. Graphs that read the event take
# two more inputs beside `history` (same [B, H] layout, most recent first):
#   history_age  float32[B, H]: seconds from the event to the request (>= 0); -1 = unknown
#                (padding, or a state recorded before event times were kept);
#   history_kind int64[B, H]:   the event's token below; 0 = padding / unknown.
HISTORY_AGE_INPUT = "history_age"
HISTORY_KIND_INPUT = "history_kind"
HISTORY_EVENT_INPUTS: tuple[str, ...] = (HISTORY_AGE_INPUT, HISTORY_KIND_INPUT)
UNKNOWN_AGE = -1.0

# Token of an event: 0 padding / unknown; then other, view, click, purchase, a rating without
# a value; then a rating by its place on the dataset's scale, in 5 steps (1 = the scale's
# bottom, 5 = its top). An event with a rating value is a rating, whatever its type says.
EVENT_TOKENS: tuple[str, ...] = (
    "", "other", "view", "click", "purchase", "rating",
    "rating 1/5", "rating 2/5", "rating 3/5", "rating 4/5", "rating 5/5",
)  # fmt: skip
N_EVENT_TOKENS = len(EVENT_TOKENS)
_KIND_TOKENS = {"view": 2, "click": 3, "purchase": 4, "rating": 5}
_FIRST_RATING_TOKEN = 6


def event_tokens(
    kinds: Sequence[str] | np.ndarray,
    ratings: Sequence[float] | np.ndarray,
    scale: tuple[float, float] = (1.0, 5.0),
) -> np.ndarray:
    """Event types (free text: "view", "click", "purchase", "rating", or a shop's own; "" =
    none) and ratings (NaN = none) -> int64[N] tokens, all >= 1 (an event is never padding).

    A type the table does not know (a shop's "add_to_cart") is "other"; so is "" without a
    rating. A rating r counts by where it sits on `scale` = (low, high), rounded to 5 steps."""
    return rated_tokens(kind_tokens(kinds), ratings, scale)


def coded_event_tokens(
    type_names: Sequence[str],
    type_codes: np.ndarray,
    ratings: Sequence[float] | np.ndarray,
    scale: tuple[float, float],
) -> np.ndarray:
    """event_tokens of a long log whose types come dictionary-encoded (type_names[type_codes]):
    each distinct type is looked up once (a 20M-event log has a handful of types)."""
    by_type = kind_tokens(type_names) if len(type_names) else np.ones(1, dtype=np.int64)
    return rated_tokens(by_type[np.asarray(type_codes, dtype=np.int64)], ratings, scale)


def kind_tokens(kinds: Sequence[str] | np.ndarray) -> np.ndarray:
    """Event types -> int64[N] tokens by type alone (event_tokens before ratings count)."""
    names = [str(k).strip().lower() for k in kinds]
    return np.fromiter((_KIND_TOKENS.get(k, 1) for k in names), dtype=np.int64, count=len(names))


def rated_tokens(
    tokens: np.ndarray, ratings: Sequence[float] | np.ndarray, scale: tuple[float, float]
) -> np.ndarray:
    """kind_tokens with the events that carry a rating value replaced by its step on `scale`
    (a copy). A "rating" event of value 0 (proto3's default) stays "rating": no value."""
    tokens = np.array(tokens, dtype=np.int64)
    ratings = np.asarray(ratings, dtype=np.float64)
    rated = ~np.isnan(ratings)
    rated &= ~((tokens == _KIND_TOKENS["rating"]) & (ratings == 0))
    if rated.any():
        low, high = scale
        span = high - low if high > low else 1.0
        step = np.rint(4.0 * (np.clip(ratings[rated], low, high) - low) / span).astype(np.int64)
        tokens[rated] = _FIRST_RATING_TOKEN + step
    return tokens


def event_token(
    kind: str, rating: float = float("nan"), scale: tuple[float, float] = (1.0, 5.0)
) -> int:
    """One event's token: event_tokens for one, in plain Python (the feature service computes
    one per live event; the same rounding, half to even, as event_tokens' np.rint)."""
    token = _KIND_TOKENS.get(str(kind).strip().lower(), 1)
    if rating != rating or (token == _KIND_TOKENS["rating"] and rating == 0):  # NaN: no rating
        return token
    low, high = scale
    span = high - low if high > low else 1.0
    return _FIRST_RATING_TOKEN + round(4.0 * (min(max(rating, low), high) - low) / span)


def history_ages(times: np.ndarray, now: float) -> np.ndarray:
    """Event times (unix s; 0 = unknown / padding) -> float32 ages in seconds at `now`: now -
    time, at least 0 (a clock a little ahead of the request's is not the future), -1 where the
    time is unknown."""
    times = np.asarray(times, dtype=np.float64)
    ages = np.maximum(now - times, 0.0)
    return np.where(times > 0, ages, UNKNOWN_AGE).astype(np.float32)


def sliding_values(
    user_codes: np.ndarray,
    values: np.ndarray,
    history_len: int,
    rows: np.ndarray | None = None,
) -> np.ndarray:
    """sliding_histories for any per-event column (event times, event tokens): for each row,
    the values of the same user's previous events, most recent first, 0 where the history is
    shorter; dtype of `values`."""
    user_codes = np.asarray(user_codes)
    values = np.asarray(values)
    rows = np.arange(len(values)) if rows is None else np.asarray(rows, dtype=np.int64)
    out = np.zeros((rows.size, history_len), dtype=values.dtype)
    for lag in range(1, history_len + 1):
        before = rows - lag
        ok = before >= 0
        prev = np.where(ok, before, 0)
        same_user = ok & (user_codes[prev] == user_codes[rows])
        out[:, lag - 1] = np.where(same_user, values[prev], 0)
    return out


def latest_values(
    owner: np.ndarray, known: np.ndarray, column: np.ndarray, n_owners: int, history_len: int
) -> np.ndarray:
    """int64[n_owners, H]: for each owner (a user; `owner` int64[N] sorted, the log in time
    order within an owner), `column` (the items, their times, their event tokens) at its
    `known` events, most recent first, 0-padded: the history at the end of the log, as
    pad_history gives it per user, for every user at once."""
    owners, values = owner[known], np.asarray(column, dtype=np.int64)[known]
    bounds = np.r_[0, np.cumsum(np.bincount(owners, minlength=n_owners))]
    from_end = bounds[owners + 1] - 1 - np.arange(owners.size)  # 0 = the owner's latest
    keep = from_end < history_len
    out = np.zeros((n_owners, history_len), dtype=np.int64)
    out[owners[keep], from_end[keep]] = values[keep]
    return out


def day_of(unix_seconds: float) -> int:
    """Days since 1970-01-01 (UTC) of a unix time: the day numbering of daily_activity."""
    return int(unix_seconds // SECONDS_PER_DAY)


def daily_activity(timestamps: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One user's events (unix s, value) -> (distinct days ascending int64, value per day)."""
    days = np.asarray(timestamps, dtype=np.int64) // SECONDS_PER_DAY
    uniq, inverse = np.unique(days, return_inverse=True)
    sums = np.zeros(uniq.size, dtype=np.float64)
    np.add.at(sums, inverse, np.asarray(values, dtype=np.float64))
    return uniq.astype(np.int64), sums.astype(np.float32)
