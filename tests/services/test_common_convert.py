"""Protobuf <-> domain conversions and event validation."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np
import pytest

from recserve.v1 import common_pb2, ranking_pb2, retrieval_pb2, uservalue_pb2
from services.contract.errors import InvalidArgument
from services.contract.types import CandidateList, EventKind, FilterSpec, RankScores, UserState
from services.platform import convert


def _state() -> UserState:
    return UserState(
        user_id="u1",
        known=True,
        user_index=7,
        profile=np.array([1, 2, 3]),
        history=np.array([5, 4, 0, 0]),
        seen=np.array([4, 5]),
        activity_days=np.array([100, 101]),
        activity_values=np.array([1.0, 2.5], dtype=np.float32),
        event_count=3,
    )


def test_user_state_round_trip_restores_padding():
    msg = convert.user_state_to_proto(_state(), "v9")
    back = convert.user_state_from_proto(msg, history_len=4)
    assert list(msg.history) == [5, 4] and msg.bundle_version == "v9"
    np.testing.assert_array_equal(back.history, [5, 4, 0, 0])
    np.testing.assert_array_equal(back.activity_values, [1.0, 2.5])
    assert back.user_index == 7 and back.known and back.event_count == 3


def test_misaligned_activity_is_invalid():
    msg = convert.user_state_to_proto(_state())
    msg.activity_values.append(1.0)
    with pytest.raises(InvalidArgument):
        convert.user_state_from_proto(msg)


def test_event_timestamp_zero_means_now():
    msg = common_pb2.Event(user_id="u", item_id="i", type=common_pb2.EVENT_TYPE_VIEW)
    event = convert.event_from_proto(msg, now=1234)
    assert event.timestamp == 1234 and event.kind is EventKind.VIEW


def test_event_round_trip():
    msg = common_pb2.Event(
        user_id="u", item_id="i", type=common_pb2.EVENT_TYPE_RATING, timestamp=9, rating=4
    )
    assert convert.event_to_proto(convert.event_from_proto(msg)) == msg


@pytest.mark.parametrize(
    "fields",
    [
        {"user_id": ""},
        {"item_id": ""},
        {"type": common_pb2.EVENT_TYPE_UNSPECIFIED},
        {"type": 42},
        {"type": common_pb2.EVENT_TYPE_RATING, "rating": 0.5},
        {"type": common_pb2.EVENT_TYPE_RATING, "rating": math.nan},
        {"value": -1.0},
        {"value": math.nan},
        {"timestamp": -5},
    ],
)
def test_bad_event_is_invalid(fields):
    base = {"user_id": "u", "item_id": "i", "type": common_pb2.EVENT_TYPE_PURCHASE}
    with pytest.raises(InvalidArgument):
        convert.event_from_proto(common_pb2.Event(**{**base, **fields}))


def test_filters_round_trip():
    spec = FilterSpec(True, ("a",), ("b", "c"), ("i1",))
    assert convert.filters_from_proto(convert.filters_to_proto(spec)) == spec


def test_candidates_and_scores_round_trip():
    cands = CandidateList(np.array([3, 1]), np.array([0.5, 0.25], dtype=np.float32))
    back = convert.candidates_from_proto(convert.candidates_to_proto(cands, "v"))
    np.testing.assert_array_equal(back.item_indices, [3, 1])
    assert back.query is None  # no user embedding: none on the wire either
    query = np.array([0.6, -0.8], dtype=np.float32)
    with_query = CandidateList(cands.item_indices, cands.scores, query=query)
    back = convert.candidates_from_proto(convert.candidates_to_proto(with_query, "v"))
    np.testing.assert_array_equal(back.query, query)
    assert back.query.dtype == np.float32
    scores = RankScores(
        np.array([0.1], np.float32), np.array([4.5], np.float32), np.array([0.3], np.float32)
    )
    msg = convert.rank_scores_to_proto(scores, "v", "CPUExecutionProvider")
    assert msg.execution_provider == "CPUExecutionProvider"
    back = convert.rank_scores_from_proto(msg)
    np.testing.assert_allclose(back.rating, [4.5])
    np.testing.assert_allclose(back.p_positive, [0.1])
    np.testing.assert_allclose(back.p_interact, [0.3])
    assert back.p_interact.dtype == np.float32


def test_rank_response_without_p_interact_falls_back_to_p_positive():
    """A ranking service from before the field: its answer is ordered by p_positive."""
    from recserve.v1 import ranking_pb2

    msg = ranking_pb2.RankResponse(p_positive=[0.2, 0.7], rating=[3.0, 4.5])
    back = convert.rank_scores_from_proto(msg)
    np.testing.assert_allclose(back.p_interact, [0.2, 0.7])


def test_user_value_segment_name_maps_to_enum():
    score = SimpleNamespace(
        user_id="u",
        p_active=0.9,
        expected_transactions=2.0,
        expected_value=30.0,
        segment="HIGH_VALUE",
        horizon_weeks=12.0,
        unit="EUR",
    )
    msg = convert.user_value_to_proto(score)
    assert msg.segment == common_pb2.SEGMENT_HIGH_VALUE and msg.unit == "EUR"
    assert convert.user_value_from_proto(msg).unit == "EUR"


def test_activities_validate_alignment():
    bad = uservalue_pb2.UserActivity(user_id="u", days=[1, 2], values=[1.0])
    with pytest.raises(InvalidArgument):
        convert.activities_from_proto([bad])


def _reference_rank_response(scores, version, provider):
    """The element-by-element encoding rank_scores_to_proto replaced (bytes must not change)."""
    msg = ranking_pb2.RankResponse(bundle_version=version, execution_provider=provider)
    msg.p_positive.extend(np.asarray(scores.p_positive).tolist())
    msg.rating.extend(np.asarray(scores.rating).tolist())
    msg.p_interact.extend(np.asarray(scores.p_interact).tolist())
    return msg


@pytest.mark.parametrize("n", [0, 1, 7, 300])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float_columns_encode_as_they_did_element_by_element(n, dtype):
    rng = np.random.default_rng(n)
    cols = [rng.random(n).astype(dtype) for _ in range(3)]
    if n > 3:
        cols[1][2], cols[0][3], cols[2][1] = np.nan, -0.0, np.inf
    scores = RankScores(*cols)
    for version, provider in (("", ""), ("v1", "CPUExecutionProvider"), ("é" * 130, "x")):
        got = convert.rank_scores_to_proto(scores, version, provider)
        want = _reference_rank_response(scores, version, provider)
        assert got.SerializeToString() == want.SerializeToString()
    ids = rng.integers(0, 2**40, n)
    cands = CandidateList(ids, cols[0].astype(np.float32), "bv")
    want = retrieval_pb2.Candidates(bundle_version="x")
    want.item_indices.extend(ids.tolist())
    want.scores.extend(cols[0].astype(np.float32).tolist())
    assert convert.candidates_to_proto(cands, "x").SerializeToString() == want.SerializeToString()


def test_services_that_do_not_read_seen_or_activity_skip_them():
    msg = convert.user_state_to_proto(_state())
    slim = convert.user_state_from_proto(msg, history_len=4, seen=False, activity=False)
    full = convert.user_state_from_proto(msg, history_len=4)
    assert slim.seen.size == slim.activity_days.size == slim.activity_values.size == 0
    np.testing.assert_array_equal(slim.history, full.history)
    np.testing.assert_array_equal(slim.profile, full.profile)
    assert (slim.user_index, slim.bundle_version) == (full.user_index, full.bundle_version)
    del msg.activity_values[:]
    with pytest.raises(InvalidArgument):
        convert.user_state_from_proto(msg, activity=False)


def test_history_times_and_kinds_round_trip_aligned_with_history():
    state = dataclasses.replace(
        _state(),
        history_times=np.array([1_700_000_500, 0, 0, 0], dtype=np.int64),
        history_kinds=np.array([10, 3, 0, 0], dtype=np.int64),
    )
    msg = convert.user_state_to_proto(state)
    assert list(msg.history_times) == [1_700_000_500, 0]  # as history: without its padding
    assert list(msg.history_kinds) == [10, 3]
    wire = common_pb2.UserFeatures.FromString(msg.SerializeToString())

    back = convert.user_state_from_proto(wire, history_len=4)

    assert back.history_times.dtype == back.history_kinds.dtype == np.int64
    np.testing.assert_array_equal(back.history_times, [1_700_000_500, 0, 0, 0])
    np.testing.assert_array_equal(back.history_kinds, [10, 3, 0, 0])


def test_history_without_times_and_kinds_sends_and_reads_none():
    msg = convert.user_state_to_proto(_state())  # none recorded (an older feature service)
    assert not msg.history_times and not msg.history_kinds
    back = convert.user_state_from_proto(msg, history_len=4)
    assert back.history_times.size == back.history_kinds.size == 0

    msg.history_kinds.extend([1, 2, 3])  # more entries than history has: those past it dropped
    back = convert.user_state_from_proto(msg)
    np.testing.assert_array_equal(back.history_kinds, [1, 2])
    np.testing.assert_array_equal(back.history_times, [0, 0])
