"""User-value scoring domain: activity -> value features -> user_value.onnx -> ValueScore.

No grpc, no torch. Features come from
services.contract.value_features (the training code).

Segments (thresholds live in manifest["value"]["segment_thresholds"], written by training):
    NEW         no active day on or before as_of_day (nothing to judge from)
    DORMANT     p_active <  dormant_p_active            (CDNOW default 0.15)
    AT_RISK     p_active <  at_risk_p_active            (CDNOW default 0.35)
    HIGH_VALUE  expected_value >= high_value_expected_value (90th percentile of the predicted
                value over the training customers at the manifest's as_of_day)
    ACTIVE      everything else
checked in that order. as_of_day 0 means now: today's day (UTC) by the scorer's wall clock
(`clock`, injectable for tests). Features are computed relative to that day, so a user whose
last activity was long ago drifts towards DORMANT as serving time passes, and activity today
counts as recent (docs/user_value.md: "Serving clock").
"""

from __future__ import annotations

import hashlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from services.contract.bundle import Bundle
from services.contract.errors import BundleError, InvalidArgument
from services.contract.features import SECONDS_PER_DAY, day_of
from services.contract.onnx import create_session
from services.contract.types import ValueScore
from services.contract.value_features import VALUE_FEATURE_NAMES, value_features_batch
from services.uservalue.lru import LRUCache

MAX_USERS_PER_CALL = 1000
MAX_USER_ID_LENGTH = 256
SEGMENTS: tuple[str, ...] = ("NEW", "HIGH_VALUE", "ACTIVE", "AT_RISK", "DORMANT")
OUTPUT_NAMES: tuple[str, ...] = ("p_active", "expected_transactions", "expected_value")

Activity = tuple[np.ndarray, np.ndarray]  # (days int64[n] ascending, values float32[n])
_EMPTY: Activity = (np.zeros(0, np.int64), np.zeros(0, np.float32))
DEFAULT_CACHE_USERS = 100_000
log = logging.getLogger(__name__)
Clock = Callable[[], float]  # unix seconds, like time.time


@dataclass(frozen=True)
class SegmentThresholds:
    dormant_p_active: float
    at_risk_p_active: float
    high_value_expected_value: float

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> SegmentThresholds:
        return cls(
            float(data["dormant_p_active"]),
            float(data["at_risk_p_active"]),
            float(data["high_value_expected_value"]),
        )

    def segment(self, has_activity: bool, p_active: float, expected_value: float) -> str:
        if not has_activity:
            return "NEW"
        if p_active < self.dormant_p_active:
            return "DORMANT"
        if p_active < self.at_risk_p_active:
            return "AT_RISK"
        if expected_value >= self.high_value_expected_value:
            return "HIGH_VALUE"
        return "ACTIVE"


def activity_snapshot(interactions_parquet: Path) -> dict[str, Activity]:
    """Per-user (days, value per day) from an event log in the canonical schema: the
    aggregation of services.contract.features.daily_activity, vectorised over all users."""
    table = pq.read_table(interactions_parquet, columns=["user_id", "timestamp", "value"])
    if table.num_rows == 0:
        return {}
    # Users as codes into their distinct ids (Arrow's dictionary encoding, not a sort of every
    # event's id string), renumbered in sorted id order like np.unique: 1M users in seconds.
    encoded = pc.dictionary_encode(table.column("user_id").combine_chunks().cast(pa.string()))
    names = np.asarray(encoded.dictionary.to_pylist(), dtype=object).astype(str)
    rank = np.empty(names.size, dtype=np.int64)
    rank[np.argsort(names, kind="stable")] = np.arange(names.size)
    uids = np.sort(names, kind="stable")
    owner = rank[encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)]
    days = table.column("timestamp").to_numpy().astype(np.int64) // SECONDS_PER_DAY
    values = np.nan_to_num(table.column("value").to_numpy(zero_copy_only=False), nan=0.0)
    order = np.lexsort((days, owner))
    owner, days, values = owner[order], days[order], values.astype(np.float64)[order]
    new_day = np.r_[True, (owner[1:] != owner[:-1]) | (days[1:] != days[:-1])]
    starts = np.flatnonzero(new_day)
    day_owner, day = owner[starts], days[starts]
    day_value = np.add.reduceat(values, starts).astype(np.float32)
    bounds = np.r_[np.flatnonzero(np.r_[True, day_owner[1:] != day_owner[:-1]]), day.size]
    first, cuts = bounds[:-1].tolist(), bounds[1:].tolist()
    return {
        str(uid): (day[a:b], day_value[a:b])
        for uid, a, b in zip(uids[day_owner[first]].tolist(), first, cuts, strict=True)
    }


def _check_activity(user_id: str, activity: Activity) -> Activity:
    days = np.asarray(activity[0])
    values = np.asarray(activity[1])
    if days.ndim != 1 or values.ndim != 1 or days.size != values.size:
        raise InvalidArgument(f"activity of {user_id!r}: {days.size} days but {values.size} values")
    if days.size and days.dtype.kind not in "iu":  # np.integer: signed or unsigned
        raise InvalidArgument(f"activity of {user_id!r}: days must be integers")
    if values.size and not np.isfinite(values).all():
        raise InvalidArgument(f"activity of {user_id!r}: values must be finite")
    if days.size > 1 and (np.diff(days) <= 0).any():
        raise InvalidArgument(f"activity of {user_id!r}: days must be strictly ascending")
    # Not copied when already int64 / float32 (from the wire they are): only read from here on.
    return days.astype(np.int64, copy=False), values.astype(np.float32, copy=False)


class UserValueScorer:
    """Scores batches of users with one ONNX Runtime call. Thread-safe (read-only state)."""

    def __init__(
        self,
        model_path: Path,
        value_manifest: Mapping[str, Any],
        snapshot: Mapping[str, Activity] | None = None,
        *,
        prefer_gpu: bool = False,
        cache_users: int = DEFAULT_CACHE_USERS,
        clock: Clock = time.time,
    ) -> None:
        names = list(value_manifest.get("feature_names", VALUE_FEATURE_NAMES))
        if names != list(VALUE_FEATURE_NAMES):
            raise BundleError("user_value.onnx was trained on different value features")
        self.horizon_weeks = float(value_manifest["horizon_weeks"])
        # The day the bundle's event log ends: scoring follows `clock`, this only tells how far
        # serving has run past the data the model was calibrated on.
        self.data_end_day = int(value_manifest["as_of_day"])
        self._clock = clock
        self.unit = str(value_manifest.get("unit", "USD"))  # older bundles: CDNOW dollars
        self.thresholds = SegmentThresholds.from_json(value_manifest["segment_thresholds"])
        self._session, self.provider = create_session(Path(model_path), prefer_gpu=prefer_gpu)
        self._snapshot = dict(snapshot or {})
        # A score is a pure function of (user, as_of_day, activity): the gateway asks for the
        # same users again and again between their feedback, so recomputing the ~20 numpy
        # feature passes and one ONNX call each time is wasted work (most of this stage's CPU).
        self._cache: LRUCache[tuple[str, int, bytes], ValueScore] = LRUCache(cache_users)

    @classmethod
    def from_bundle(
        cls,
        bundle: Bundle,
        *,
        prefer_gpu: bool = False,
        cache_users: int = DEFAULT_CACHE_USERS,
        clock: Clock = time.time,
    ) -> UserValueScorer:
        if "value" not in bundle.manifest:
            raise BundleError(f"bundle {bundle.version} has no manifest['value'] section")
        snapshot = activity_snapshot(bundle.path("interactions.parquet"))
        scorer = cls(
            bundle.path("user_value.onnx"),
            bundle.manifest["value"],
            snapshot,
            prefer_gpu=prefer_gpu,
            cache_users=cache_users,
            clock=clock,
        )
        scorer.warn_if_stale()
        return scorer

    def today(self) -> int:
        """The day as_of_day 0 stands for: today by the scorer's clock."""
        return day_of(self._clock())

    def days_past_data(self) -> int:
        """Days from the end of the bundle's event log to today (negative: a clock behind it)."""
        return self.today() - self.data_end_day

    def warn_if_stale(self) -> bool:
        """Log once at load when today lies more than one horizon past the training data: the
        model then extrapolates its decay to gaps it never saw (docs/user_value.md)."""
        past = self.days_past_data()
        stale = past > 7 * self.horizon_weeks
        if stale:
            log.warning(
                "user value: serving %d days after the bundle's data ends (horizon %.0f weeks); "
                "scores of users without recent activity are extrapolated, retrain to recalibrate",
                past,
                self.horizon_weeks,
            )
        return stale

    def score(
        self,
        user_ids: Sequence[str],
        activities: Mapping[str, Activity] | None = None,
        as_of_day: int = 0,
    ) -> list[ValueScore]:
        """Scores aligned with user_ids, as of `as_of_day` (0 = today by the clock). Live
        `activities` override the bundle snapshot; a user in neither is scored as NEW."""
        if not user_ids:
            raise InvalidArgument("user_ids is empty")
        if len(user_ids) > MAX_USERS_PER_CALL:
            raise InvalidArgument(f"at most {MAX_USERS_PER_CALL} users per call")
        if any(not uid or len(uid) > MAX_USER_ID_LENGTH for uid in user_ids):
            raise InvalidArgument("user ids must be non-empty and at most 256 characters")
        if as_of_day < 0:
            raise InvalidArgument(f"as_of_day must be >= 0, got {as_of_day}")
        live = {uid: _check_activity(uid, act) for uid, act in (activities or {}).items()}
        if as_of_day == 0:
            as_of_day = self.today()
        keys = [(uid, as_of_day, self._activity_key(uid, live.get(uid))) for uid in user_ids]
        out: list[ValueScore | None] = [self._cache.get(key) for key in keys]
        missing = [i for i, score in enumerate(out) if score is None]
        if missing:
            # Score each distinct missing user once (a batch may repeat an id).
            todo = list(dict.fromkeys(user_ids[i] for i in missing))
            fresh = dict(zip(todo, self._compute(todo, live, as_of_day), strict=True))
            for i in missing:
                out[i] = fresh[user_ids[i]]
                self._cache.put(keys[i], out[i])
        return out  # type: ignore[return-value]  # every slot is filled above

    def _activity_key(self, user_id: str, activity: Activity | None) -> bytes:
        """The cache key's activity part: b"" for none given, and for a live history equal to
        the user's bundle snapshot (the gateway sends the feature service's copy of it: the
        score is the same, so it shares the entry that prime() fills); else a digest."""
        if activity is None:
            return b""
        snap = self._snapshot.get(user_id)
        if (
            snap is not None
            and activity[0].tobytes() == snap[0].tobytes()
            and activity[1].tobytes() == snap[1].tobytes()
        ):
            return b""
        return _digest(activity)

    def warm_up(self) -> int:
        """Runs the ONNX session once (its lazy set-up, not on a request), then prime(). The
        number of users cached."""
        zeros = np.zeros((1, len(VALUE_FEATURE_NAMES)), dtype=np.float32)
        self._session.run(list(OUTPUT_NAMES), {"features": zeros})
        return self.prime()

    def prime(self, as_of_day: int = 0, *, chunk: int = 4096) -> int:
        """Scores the bundle snapshot's users as of `as_of_day` (0 = today) into the cache, the
        most active first, at most the cache's capacity: a request then finds its user's score
        instead of paying for the features and an ONNX call. The number cached."""
        capacity = self._cache.capacity
        if capacity == 0 or not self._snapshot:
            return 0
        day = self.today() if as_of_day == 0 else as_of_day
        users = sorted(self._snapshot, key=lambda u: -self._snapshot[u][0].size)[:capacity]
        for start in range(0, len(users), chunk):
            part = users[start : start + chunk]
            for uid, score in zip(part, self._compute(part, {}, day), strict=True):
                self._cache.put((uid, day, b""), score)
        return len(users)

    def _compute(
        self, user_ids: Sequence[str], live: Mapping[str, Activity], as_of_day: int
    ) -> list[ValueScore]:
        rows = [live.get(uid) or self._snapshot.get(uid, _EMPTY) for uid in user_ids]
        out: list[ValueScore | None] = [None] * len(user_ids)
        scored = []  # users with some activity; the others are NEW without asking the net
        for i, (uid, row) in enumerate(zip(user_ids, rows, strict=True)):
            if len(row[0]):
                scored.append(i)
            else:
                out[i] = ValueScore(uid, 0.0, 0.0, 0.0, "NEW", self.horizon_weeks, self.unit)
        if not scored:
            return out  # type: ignore[return-value]  # every slot is filled above
        features = value_features_batch([rows[i] for i in scored], as_of_day)
        p, n, v = self._session.run(list(OUTPUT_NAMES), {"features": features})
        has_activity = features[:, VALUE_FEATURE_NAMES.index("has_activity")] > 0
        for j, i in enumerate(scored):
            pa, nt, ev = float(p[j]), float(n[j]), float(v[j])
            if not has_activity[j]:  # the net never saw users without history
                pa, nt, ev = 0.0, 0.0, 0.0
            if not all(map(math.isfinite, (pa, nt, ev))):
                raise BundleError("user_value.onnx produced a non-finite score")
            segment = self.thresholds.segment(bool(has_activity[j]), pa, ev)
            out[i] = ValueScore(user_ids[i], pa, nt, ev, segment, self.horizon_weeks, self.unit)
        return out  # type: ignore[return-value]  # every slot is filled above


def _digest(activity: Activity | None) -> bytes:
    """Identifies a live activity history (b"" = none given: the bundle snapshot is used)."""
    if activity is None:
        return b""
    days, values = activity
    h = hashlib.blake2b(days.tobytes(), digest_size=16)
    h.update(values.tobytes())
    return h.digest()
