"""Hypothesis strategies for every recserve.v1 request message, plus call/leak helpers.

Values are random *and* adversarial: huge, negative and zero k; unknown, empty, giant and odd
unicode ids; duplicate and oversized lists; NaN/inf floats; extreme int64s; missing
sub-messages. Sizes straddle the small limits the fuzz stack runs with (LIMIT_ENV).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import grpc
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st

from recserve.v1 import (
    common_pb2,
    feature_pb2,
    gateway_pb2,
    ranking_pb2,
    retrieval_pb2,
    uservalue_pb2,
)

MAX_MESSAGE_BYTES = 256 << 10  # RECSERVE_MAX_MESSAGE_BYTES of every fuzzed server
GATEWAY_MAX_K, GATEWAY_MAX_BATCH, GATEWAY_CANDIDATES = 50, 40, 100
FEATURE_MAX_IDS = FEATURE_MAX_EVENTS = USERVALUE_MAX_USERS = 40
RETRIEVAL_MAX_K = RANKING_MAX_CANDIDATES = 200
LIMIT_ENV = {
    "RECSERVE_MAX_K": str(GATEWAY_MAX_K),
    "RECSERVE_MAX_BATCH": str(GATEWAY_MAX_BATCH),
    "RECSERVE_CANDIDATES": str(GATEWAY_CANDIDATES),
    "RECSERVE_FEATURE_MAX_IDS": str(FEATURE_MAX_IDS),
    "RECSERVE_FEATURE_MAX_EVENTS": str(FEATURE_MAX_EVENTS),
    "RECSERVE_USERVALUE_MAX_USERS": str(USERVALUE_MAX_USERS),
    "RECSERVE_RETRIEVAL_MAX_K": str(RETRIEVAL_MAX_K),
    "RECSERVE_RANKING_MAX_CANDIDATES": str(RANKING_MAX_CANDIDATES),
    "RECSERVE_RANKING_MAX_BATCH": "4",
}

# Every call carries a deadline; a hang shows up as DEADLINE_EXCEEDED, which is forbidden.
CALL_TIMEOUT_S = 20.0
EXAMPLES = int(os.environ.get("RECSERVE_FUZZ_EXAMPLES", "100"))
ALLOWED = frozenset(
    {
        grpc.StatusCode.OK,
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        # item indices labelled with a bundle version the service neither holds nor can map
        grpc.StatusCode.FAILED_PRECONDITION,
    }
)

FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,  # same examples on every run: CI failures reproduce
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# --- scalars ---------------------------------------------------------------------------------

_TEXT = st.characters(blacklist_categories=("Cs",))  # protobuf strings must be valid UTF-8
INT32 = st.one_of(
    st.integers(-3, GATEWAY_MAX_K + 3),
    st.sampled_from([0, -1, 2**31 - 1, -(2**31), RETRIEVAL_MAX_K, RETRIEVAL_MAX_K + 1, 10_000]),
)
INT64 = st.one_of(
    st.integers(-3, 2_000),
    st.sampled_from([-(2**63), 2**63 - 1, -1, 0, 2**31, 10**12]),
)
F32 = st.floats(width=32)  # NaN, +-inf, subnormals, +-3.4e38
IDS = st.one_of(
    st.integers(0, 2_000).map(str),  # mostly known users/items of the MovieLens bundle
    st.sampled_from(["", " ", "\t", "-1", "0", "１９６", "196\x00", "é" * 10, "\U0001f600"]),
    st.text(_TEXT, max_size=24),
    st.integers(250, 260).map(lambda n: "x" * n),  # around the 256-character id limit
    st.sampled_from([5_000, 60_000]).map(lambda n: "g" * n),  # giant strings
)
GENRES = st.sampled_from(["Action", "Comedy", "Drama", "Horror", "Romance"])
TAGS = st.one_of(GENRES, IDS)
# Plausible values: each strategy below mixes them in, so valid requests reach deep code too.
KNOWN = st.integers(1, 300).map(str)  # MovieLens user and item ids (mostly in the bundle)
SECONDS = st.one_of(st.just(0), st.integers(800_000_000, 2_000_000_000))


def id_lists(limit: int, ids: st.SearchStrategy[str] = IDS) -> st.SearchStrategy[list[str]]:
    """Small lists, lists with duplicates, and lists at / just over / far over `limit`."""
    small = st.lists(ids, max_size=6)
    return st.one_of(
        small,
        small.map(lambda xs: xs + xs),
        st.tuples(
            st.integers(0, 2_000).map(str), st.sampled_from([limit, limit + 1, 3 * limit])
        ).map(lambda t: [t[0]] * t[1]),
    )


def int_lists(limit: int) -> st.SearchStrategy[list[int]]:
    return st.one_of(
        st.lists(INT64, max_size=12),
        st.sampled_from([limit, limit + 1, 4 * limit]).map(lambda n: [1] * n),
    )


def message(cls: type, **fields: Any) -> Any:
    """cls(**fields) without the None ones: None = the sub-message or field is absent."""
    return cls(**{k: v for k, v in fields.items() if v is not None})


def build(cls: type, **strategies: st.SearchStrategy) -> st.SearchStrategy:
    return st.fixed_dictionaries(strategies).map(lambda kw: message(cls, **kw))


def maybe(strategy: st.SearchStrategy) -> st.SearchStrategy:
    return st.one_of(st.none(), strategy)


# --- common messages ---------------------------------------------------------------------------

EVENT_TYPES = st.one_of(st.integers(0, 4), st.sampled_from([-1, 5, 99, 2**31 - 1]))
EVENTS = st.one_of(
    build(
        common_pb2.Event,
        user_id=IDS,
        item_id=IDS,
        type=EVENT_TYPES,
        timestamp=INT64,
        rating=st.one_of(st.integers(0, 6).map(float), F32),
        value=F32,
    ),
    st.builds(
        lambda user, item, kind, ts, rating, value: common_pb2.Event(
            user_id=user,
            item_id=item,
            type=kind,
            timestamp=ts,
            rating=float(rating) if kind == common_pb2.EVENT_TYPE_RATING else 0.0,
            value=value if kind == common_pb2.EVENT_TYPE_PURCHASE else 0.0,
        ),
        st.one_of(KNOWN, st.just("fuzz-new-user")),
        KNOWN,
        st.integers(1, 4),
        SECONDS,
        st.integers(1, 5),
        st.floats(0, 1e4, width=32),
    ),
)


def event_lists(limit: int) -> st.SearchStrategy[list]:
    valid = common_pb2.Event(user_id="1", item_id="1", type=common_pb2.EVENT_TYPE_VIEW)
    return st.one_of(
        st.lists(EVENTS, max_size=5),
        st.sampled_from([limit + 1, 3 * limit]).map(lambda n: [valid] * n),
    )


def filters(limit: int) -> st.SearchStrategy:
    return maybe(
        st.one_of(
            build(
                common_pb2.Filters,
                exclude_seen=st.booleans(),
                include_tags=st.lists(TAGS, max_size=4),
                exclude_tags=st.lists(TAGS, max_size=4),
                exclude_items=id_lists(limit),
            ),
            build(
                common_pb2.Filters,
                exclude_seen=st.booleans(),
                include_tags=st.lists(GENRES, max_size=2, unique=True),
                exclude_items=st.lists(KNOWN, max_size=5),
            ),
        )
    )


USER_FEATURES = maybe(
    st.one_of(
        build(
            common_pb2.UserFeatures,
            user_id=KNOWN,
            known=st.booleans(),
            user_index=st.integers(0, 50),
            history=st.lists(st.integers(1, 100), max_size=20),
            seen=st.lists(st.one_of(st.integers(1, 300), INT64), max_size=20),
        ),
        build(
            common_pb2.UserFeatures,
            user_id=IDS,
            known=st.booleans(),
            user_index=INT64,
            profile=st.one_of(st.lists(st.integers(0, 3), min_size=3, max_size=3), st.lists(INT64)),
            history=st.lists(st.one_of(st.integers(0, 50), INT64), max_size=60),
            seen=st.lists(INT64, max_size=20),
            activity_days=st.lists(INT64, max_size=6),
            activity_values=st.lists(F32, max_size=6),
            event_count=INT64,
            bundle_version=st.one_of(st.just(""), IDS),
        ),
    )
)

# --- one strategy per request message --------------------------------------------------------

GW = GATEWAY_MAX_BATCH
SMALL_K = st.integers(1, GATEWAY_MAX_K)
KNOWN_LISTS = st.lists(KNOWN, min_size=1, max_size=8)
RECOMMEND = st.one_of(
    build(
        gateway_pb2.RecommendRequest,
        user_id=IDS,
        k=INT32,
        filters=filters(GW),
        context=maybe(build(gateway_pb2.RecommendContext, recent_items=id_lists(GW), time=INT64)),
    ),
    build(
        gateway_pb2.RecommendRequest,
        user_id=st.one_of(KNOWN, st.just("fuzz-new-user")),
        k=SMALL_K,
        filters=filters(GW),
        context=maybe(build(gateway_pb2.RecommendContext, recent_items=st.lists(KNOWN))),
    ),
)
PREDICT_RATINGS = st.one_of(
    build(gateway_pb2.PredictRatingsRequest, user_id=IDS, item_ids=id_lists(GW)),
    build(gateway_pb2.PredictRatingsRequest, user_id=KNOWN, item_ids=KNOWN_LISTS),
)
SIMILAR_ITEMS = st.one_of(
    build(gateway_pb2.SimilarItemsRequest, item_id=IDS, k=INT32, filters=filters(GW)),
    build(gateway_pb2.SimilarItemsRequest, item_id=KNOWN, k=SMALL_K, filters=filters(GW)),
)
RECOMMEND_TAGS = build(gateway_pb2.RecommendTagsRequest, user_id=IDS, k=INT32)
SCORE_USERS = build(gateway_pb2.ScoreUsersRequest, user_ids=id_lists(GW))
FEEDBACK = build(gateway_pb2.FeedbackRequest, events=event_lists(GW))

FM = FEATURE_MAX_IDS
GET_USER = build(feature_pb2.GetUserRequest, user_id=IDS, recent_items=id_lists(FM))
GET_USERS = build(feature_pb2.GetUsersRequest, user_ids=id_lists(FM))
GET_ITEMS = st.one_of(
    build(feature_pb2.GetItemsRequest, item_ids=id_lists(FM)),
    build(feature_pb2.GetItemsRequest, item_ids=KNOWN_LISTS),
)
APPLY_EVENTS = build(feature_pb2.ApplyEventsRequest, events=event_lists(FEATURE_MAX_EVENTS))

RETRIEVE = build(
    retrieval_pb2.RetrieveRequest, user=USER_FEATURES, k=INT32, filters=filters(RETRIEVAL_MAX_K)
)
RETRIEVE_SIMILAR = st.one_of(
    build(
        retrieval_pb2.RetrieveSimilarRequest,
        item_id=IDS,
        k=INT32,
        filters=filters(RETRIEVAL_MAX_K),
    ),
    build(
        retrieval_pb2.RetrieveSimilarRequest,
        item_id=KNOWN,
        k=st.integers(1, RETRIEVAL_MAX_K),
        filters=filters(RETRIEVAL_MAX_K),
    ),
)
TAG_AFFINITIES = build(retrieval_pb2.TagAffinitiesRequest, user=USER_FEATURES, k=INT32)

RANK = build(
    ranking_pb2.RankRequest,
    user=USER_FEATURES,
    item_indices=st.one_of(
        st.lists(st.one_of(st.integers(0, 60), INT64), max_size=30),
        int_lists(RANKING_MAX_CANDIDATES),
    ),
)

ACTIVITY = build(
    uservalue_pb2.UserActivity,
    user_id=IDS,
    days=st.one_of(st.lists(st.integers(9_000, 11_000), max_size=8).map(sorted), st.lists(INT64)),
    values=st.lists(st.one_of(st.floats(0, 1e4, width=32), F32), max_size=8),
)
PLAUSIBLE_ACTIVITY = st.builds(
    lambda user, days, values: uservalue_pb2.UserActivity(
        user_id=user, days=days, values=values[: len(days)] + [1.0] * (len(days) - len(values))
    ),
    KNOWN,
    st.lists(st.integers(9_000, 11_000), max_size=8, unique=True).map(sorted),
    st.lists(st.floats(0, 1e6, width=32), max_size=8),
)
SCORE = st.one_of(
    build(
        uservalue_pb2.ScoreRequest,
        user_ids=id_lists(USERVALUE_MAX_USERS),
        activities=st.one_of(
            st.lists(ACTIVITY, max_size=4),
            st.just([uservalue_pb2.UserActivity(user_id="1")] * (USERVALUE_MAX_USERS + 1)),
        ),
        as_of_day=INT64,
    ),
    build(
        uservalue_pb2.ScoreRequest,
        user_ids=KNOWN_LISTS,
        activities=st.lists(PLAUSIBLE_ACTIVITY, max_size=3),
        as_of_day=st.one_of(st.just(0), st.integers(9_000, 12_000)),
    ),
)

# --- calls -----------------------------------------------------------------------------------


def status_of(method: Callable[..., Any], request: Any) -> tuple[grpc.StatusCode, Any, str]:
    """-> (status, response or None, details) of one call with a deadline."""
    try:
        return grpc.StatusCode.OK, method(request, timeout=CALL_TIMEOUT_S), ""
    except grpc.RpcError as exc:
        return exc.code(), None, exc.details() or ""


def assert_clean(method: Callable[..., Any], request: Any, allowed=ALLOWED) -> Any:
    code, response, details = status_of(method, request)
    event(f"status {code.name}")  # --hypothesis-show-statistics: how often each status came
    assert code in allowed, f"{code.name}: {details!r} for {_short(request)}"
    assert "Traceback" not in details
    return response


def _short(request: Any) -> str:
    text = str(request)
    return text if len(text) < 600 else text[:600] + f"... ({len(text)} chars)"


# --- leak probes -----------------------------------------------------------------------------


def process_resources() -> dict[str, int]:
    """Native threads (grpc core's included) and open file descriptors of this process."""
    return {
        "threads": len(os.listdir("/proc/self/task")),
        "fds": len(os.listdir("/proc/self/fd")),
    }


LEAK_BOUND = {"threads": 6, "fds": 24}


def assert_no_leak(before: dict[str, int], after: dict[str, int]) -> None:
    for key, bound in LEAK_BOUND.items():
        assert after[key] - before[key] <= bound, f"{key} grew {before[key]} -> {after[key]}"
