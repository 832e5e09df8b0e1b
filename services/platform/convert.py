"""recserve.v1 protobuf messages <-> domain types (services.contract.types).

Packed numeric fields move as whole arrays (`extend` from ndarray.tolist(), `np.asarray` back)
rather than element by element. Incoming events are validated here: InvalidArgument on bad input.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from recserve.v1 import common_pb2, ranking_pb2, retrieval_pb2, uservalue_pb2
from services.contract.added_items import AddedItem, NewItem
from services.contract.errors import InvalidArgument
from services.contract.features import pad_history
from services.contract.types import (
    CandidateList,
    Event,
    EventKind,
    FilterSpec,
    ItemInfo,
    RankScores,
    UserState,
    ValueScore,
)
from services.platform.protowire import field_key, len_field, packed_f32

_KIND_TO_PB = {
    EventKind.VIEW: common_pb2.EVENT_TYPE_VIEW,
    EventKind.CLICK: common_pb2.EVENT_TYPE_CLICK,
    EventKind.RATING: common_pb2.EVENT_TYPE_RATING,
    EventKind.PURCHASE: common_pb2.EVENT_TYPE_PURCHASE,
}
_PB_TO_KIND = {v: k for k, v in _KIND_TO_PB.items()}


def _i64(values: Iterable[int]) -> np.ndarray:
    return np.asarray(values, dtype=np.int64)


def _f32(values: Iterable[float]) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# --- wire encoding of float columns ------------------------------------------------------------
# A packed `repeated float` is its values' little-endian float32 bytes: a response whose columns
# are float arrays is encoded as bytes and parsed once (upb copies them), instead of one Python
# float per value through ndarray.tolist() and RepeatedScalarContainer.extend.

_RANK_TAGS = {
    name: field_key(ranking_pb2.RankResponse, name)
    for name in ("p_positive", "rating", "p_interact", "bundle_version", "execution_provider")
}
_CANDIDATE_TAGS = {
    name: field_key(retrieval_pb2.Candidates, name) for name in ("scores", "user_embedding")
}


# --- user features ---------------------------------------------------------------------------


def user_state_to_proto(state: UserState, bundle_version: str = "") -> common_pb2.UserFeatures:
    """History is sent without its 0 padding (the proto holds at most H items), its entries'
    times and kinds with it (none when none is recorded)."""
    history = np.asarray(state.history, dtype=np.int64)
    msg = common_pb2.UserFeatures(
        user_id=state.user_id,
        known=state.known,
        user_index=int(state.user_index),
        event_count=int(state.event_count),
        bundle_version=bundle_version or state.bundle_version,
    )
    msg.profile.extend(np.asarray(state.profile, dtype=np.int64).tolist())
    kept = history > 0
    msg.history.extend(history[kept].tolist())
    for out, values in (
        (msg.history_times, state.history_times),
        (msg.history_kinds, state.history_kinds),
    ):
        column = np.asarray(values, dtype=np.int64)
        if column.any():
            out.extend(pad_history(column, history.size)[kept].tolist())
    msg.seen.extend(np.asarray(state.seen, dtype=np.int64).tolist())
    msg.activity_days.extend(np.asarray(state.activity_days, dtype=np.int64).tolist())
    msg.activity_values.extend(np.asarray(state.activity_values, dtype=np.float32).tolist())
    return msg


_NO_I64 = np.zeros(0, dtype=np.int64)
_NO_F32 = np.zeros(0, dtype=np.float32)
_NO_I64.flags.writeable = False
_NO_F32.flags.writeable = False


def user_state_from_proto(
    msg: common_pb2.UserFeatures,
    *,
    history_len: int | None = None,
    profile_len: int | None = None,
    seen: bool = True,
    activity: bool = True,
) -> UserState:
    """history_len pads/truncates history to int64[H]; profile_len checks the profile size.
    history_times / history_kinds (when sent) are aligned with that history: padded with 0
    (unknown), entries past it dropped.
    seen=False / activity=False: a service that never reads those fields (ranking reads
    neither, retrieval no activity) leaves them empty instead of converting them; the activity
    lengths are checked all the same."""
    profile = _i64(msg.profile)
    if profile_len is not None:
        if profile.size == 0:
            profile = np.zeros(profile_len, dtype=np.int64)
        elif profile.size != profile_len:
            raise InvalidArgument(f"profile has {profile.size} fields, expected {profile_len}")
    history = _i64(msg.history)
    times, kinds = _history_column(msg.history_times), _history_column(msg.history_kinds)
    if history_len is not None:
        history = pad_history(history, history_len)
    if times.size or kinds.size:  # aligned with the (padded) history: unknown past the sent
        times, kinds = pad_history(times, history.size), pad_history(kinds, history.size)
    if activity:
        days, values = _i64(msg.activity_days), _f32(msg.activity_values)
        if days.size != values.size:
            raise InvalidArgument("activity_days and activity_values differ in length")
    else:
        if len(msg.activity_days) != len(msg.activity_values):
            raise InvalidArgument("activity_days and activity_values differ in length")
        days, values = _NO_I64, _NO_F32
    return UserState(
        user_id=msg.user_id,
        known=msg.known,
        user_index=int(msg.user_index),
        profile=profile,
        history=history,
        seen=_i64(msg.seen) if seen else _NO_I64,
        activity_days=days,
        activity_values=values,
        event_count=int(msg.event_count),
        bundle_version=msg.bundle_version,
        history_times=times,
        history_kinds=kinds,
    )


def _history_column(values: Iterable[int]) -> np.ndarray:
    """A UserFeatures history_times / history_kinds field -> int64 (empty: none sent)."""
    out = _i64(values)
    return out if out.size else _NO_I64


# --- events ----------------------------------------------------------------------------------


def event_from_proto(msg: common_pb2.Event, now: int | None = None) -> Event:
    """Validates one event; timestamp 0 becomes `now` (default: this server's clock)."""
    if not msg.user_id:
        raise InvalidArgument("event.user_id is empty")
    if not msg.item_id:
        raise InvalidArgument(f"event for user {msg.user_id!r}: item_id is empty")
    kind = _PB_TO_KIND.get(msg.type)
    if kind is None:
        raise InvalidArgument(f"event for user {msg.user_id!r}: unknown type {msg.type}")
    if msg.timestamp < 0:
        raise InvalidArgument(f"event for user {msg.user_id!r}: negative timestamp")
    timestamp = msg.timestamp or (int(time.time()) if now is None else now)
    rating, value = float(msg.rating), float(msg.value)
    if kind is EventKind.RATING and not 1.0 <= rating <= 5.0:
        raise InvalidArgument(f"event for user {msg.user_id!r}: rating {rating} not in 1..5")
    if not math.isfinite(rating) or rating < 0:
        raise InvalidArgument(f"event for user {msg.user_id!r}: invalid rating {rating}")
    if not math.isfinite(value) or value < 0:
        raise InvalidArgument(f"event for user {msg.user_id!r}: value {value} must be >= 0")
    return Event(msg.user_id, msg.item_id, kind, int(timestamp), rating, value)


def events_from_proto(msgs: Sequence[common_pb2.Event], now: int | None = None) -> list[Event]:
    now = int(time.time()) if now is None else now
    return [event_from_proto(m, now) for m in msgs]


def event_to_proto(event: Event) -> common_pb2.Event:
    return common_pb2.Event(
        user_id=event.user_id,
        item_id=event.item_id,
        type=_KIND_TO_PB[event.kind],
        timestamp=event.timestamp,
        rating=event.rating,
        value=event.value,
    )


# --- filters, items ---------------------------------------------------------------------------


def filters_from_proto(msg: common_pb2.Filters | None) -> FilterSpec:
    if msg is None:
        return FilterSpec()
    return FilterSpec(
        exclude_seen=msg.exclude_seen if msg.HasField("exclude_seen") else None,
        include_tags=tuple(msg.include_tags),
        exclude_tags=tuple(msg.exclude_tags),
        exclude_items=tuple(msg.exclude_items),
    )


def filters_to_proto(spec: FilterSpec) -> common_pb2.Filters:
    return common_pb2.Filters(
        exclude_seen=spec.exclude_seen,  # None: unset, the serving bundle's default
        include_tags=list(spec.include_tags),
        exclude_tags=list(spec.exclude_tags),
        exclude_items=list(spec.exclude_items),
    )


def item_info_to_proto(info: ItemInfo) -> common_pb2.ItemInfo:
    return common_pb2.ItemInfo(
        item_id=info.item_id,
        item_index=info.item_index,
        title=info.title,
        tags=list(info.tags),
        year=info.year,
        popularity=info.popularity,
    )


def item_info_from_proto(msg: common_pb2.ItemInfo) -> ItemInfo:
    return ItemInfo(
        item_id=msg.item_id,
        item_index=int(msg.item_index),
        title=msg.title,
        tags=tuple(msg.tags),
        year=int(msg.year),
        popularity=int(msg.popularity),
    )


# --- candidates, scores -----------------------------------------------------------------------


def candidates_to_proto(cands: CandidateList, bundle_version: str = "") -> retrieval_pb2.Candidates:
    columns = packed_f32(_CANDIDATE_TAGS["scores"], cands.scores)
    if cands.query is not None:
        columns += packed_f32(_CANDIDATE_TAGS["user_embedding"], cands.query)
    msg = retrieval_pb2.Candidates.FromString(columns)
    msg.bundle_version = bundle_version or cands.bundle_version
    msg.item_indices.extend(np.asarray(cands.item_indices, dtype=np.int64).tolist())
    return msg


def candidates_from_proto(msg: retrieval_pb2.Candidates) -> CandidateList:
    return CandidateList(
        item_indices=_i64(msg.item_indices),
        scores=_f32(msg.scores),
        bundle_version=msg.bundle_version,
        query=_f32(msg.user_embedding) if len(msg.user_embedding) else None,
    )


def new_item_from_proto(msg: common_pb2.NewItem) -> NewItem:
    """The explicit embedding is kept as given (float32); its size and values are checked by
    whoever knows the dimension (retrieval)."""
    embedding = _f32(msg.embedding) if len(msg.embedding) else None
    return NewItem(
        item_id=msg.item_id,
        title=msg.title,
        tags=tuple(msg.tags),
        description=msg.description,
        embedding=embedding,
        row=int(msg.row),
    )


def new_item_to_proto(item: NewItem) -> common_pb2.NewItem:
    msg = common_pb2.NewItem(
        item_id=item.item_id,
        title=item.title,
        tags=list(item.tags),
        description=item.description,
        row=item.row,
    )
    if item.embedding is not None:
        msg.embedding.extend(np.asarray(item.embedding, dtype=np.float32).tolist())
    return msg


def added_item_to_proto(entry: AddedItem) -> common_pb2.AddedItem:
    return common_pb2.AddedItem(
        ordinal=entry.ordinal,
        row=entry.row,
        item=new_item_to_proto(entry.item),
        change=entry.change,
    )


def added_item_from_proto(msg: common_pb2.AddedItem) -> AddedItem:
    return AddedItem(
        ordinal=int(msg.ordinal),
        row=int(msg.row),
        item=new_item_from_proto(msg.item),
        change=int(msg.change),
    )


def rank_scores_to_proto(
    scores: RankScores, bundle_version: str = "", execution_provider: str = ""
) -> ranking_pb2.RankResponse:
    tags = _RANK_TAGS
    return ranking_pb2.RankResponse.FromString(
        b"".join(
            (
                packed_f32(tags["p_positive"], scores.p_positive),
                packed_f32(tags["rating"], scores.rating),
                len_field(tags["bundle_version"], bundle_version.encode()),
                len_field(tags["execution_provider"], execution_provider.encode()),
                packed_f32(tags["p_interact"], scores.p_interact),
            )
        )
    )


def rank_scores_from_proto(msg: ranking_pb2.RankResponse) -> RankScores:
    """A response without p_interact (a ranking service from before that field) orders by its
    p_positive, as that service's gateway did."""
    p_positive = _f32(msg.p_positive)
    p_interact = _f32(msg.p_interact) if len(msg.p_interact) else p_positive.copy()
    return RankScores(p_positive=p_positive, rating=_f32(msg.rating), p_interact=p_interact)


# --- user value -------------------------------------------------------------------------------


def segment_to_proto(name: str) -> int:
    """ "HIGH_VALUE" (or "SEGMENT_HIGH_VALUE", any case) -> common_pb2.SEGMENT_HIGH_VALUE."""
    key = str(getattr(name, "name", name)).upper()
    key = key if key.startswith("SEGMENT_") else f"SEGMENT_{key}"
    try:
        return common_pb2.Segment.Value(key)
    except ValueError:
        return common_pb2.SEGMENT_UNSPECIFIED


def user_value_to_proto(score: ValueScore) -> common_pb2.UserValue:
    return common_pb2.UserValue(**user_value_fields(score))


def user_value_fields(score: ValueScore) -> dict[str, Any]:
    """A UserValue's fields, for a message that holds one: `Response(user_value=fields)` builds
    it in place (a UserValue message passed there would be built, then copied)."""
    return {
        "user_id": score.user_id,
        "p_active": float(score.p_active),
        "expected_transactions": float(score.expected_transactions),
        "expected_value": float(score.expected_value),
        "segment": segment_to_proto(score.segment),
        "horizon_weeks": float(score.horizon_weeks),
        "unit": score.unit,
    }


def user_value_from_proto(msg: common_pb2.UserValue) -> ValueScore:
    try:
        segment = common_pb2.Segment.Name(msg.segment).removeprefix("SEGMENT_")
    except ValueError:  # a newer server's segment this client does not know yet
        segment = "UNSPECIFIED"
    return ValueScore(
        user_id=msg.user_id,
        p_active=float(msg.p_active),
        expected_transactions=float(msg.expected_transactions),
        expected_value=float(msg.expected_value),
        segment=segment,
        horizon_weeks=float(msg.horizon_weeks),
        unit=msg.unit,
    )


def activities_from_proto(
    msgs: Sequence[uservalue_pb2.UserActivity],
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """UserActivity list -> {user_id: (days int64[A], values float32[A])}, validated."""
    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for msg in msgs:
        if not msg.user_id:
            raise InvalidArgument("activity.user_id is empty")
        days, values = _i64(msg.days), _f32(msg.values)
        if days.size != values.size:
            raise InvalidArgument(f"activity of {msg.user_id!r}: days and values differ in length")
        if values.size and (not np.isfinite(values).all() or (values < 0).any()):
            raise InvalidArgument(f"activity of {msg.user_id!r}: values must be finite and >= 0")
        out[msg.user_id] = (days, values)
    return out


def activities_to_proto(
    activities: Mapping[str, tuple[Any, Any]],
) -> list[uservalue_pb2.UserActivity]:
    out = []
    for user_id, (days, values) in activities.items():
        msg = uservalue_pb2.UserActivity(user_id=user_id)
        msg.days.extend(_i64(days).tolist())
        msg.values.extend(_f32(values).tolist())
        out.append(msg)
    return out
