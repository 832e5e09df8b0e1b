"""services.uservalue.scorer.UserValueScorer against a hand-built user_value.onnx whose outputs
are simple functions of the value features, so every segment can be forced."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from services.contract.bundle import Bundle
from services.contract.errors import InvalidArgument
from services.contract.features import SECONDS_PER_DAY, daily_activity
from services.contract.value_features import VALUE_FEATURE_NAMES
from services.uservalue.scorer import MAX_USERS_PER_CALL, UserValueScorer

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

AS_OF = 200
SECTION = {
    "horizon_weeks": 39.0,
    "as_of_day": AS_OF,
    "unit": "USD",
    "feature_names": list(VALUE_FEATURE_NAMES),
    "segment_thresholds": {
        "dormant_p_active": 0.2,
        "at_risk_p_active": 0.5,
        "high_value_expected_value": 50.0,
    },
}
# user -> (days, values) in the bundle's interaction log
SNAPSHOT = {
    "dormant": ([10], [5.0]),  # nothing in the last 13 weeks: p = sigmoid(-2) = 0.12
    "at_risk": ([150], [5.0]),  # 1 day in 13 weeks: p = sigmoid(2 ln 2 - 2) = 0.35
    "active": ([150, 160], [5.0, 5.0]),  # 2 days: p = 0.55, value = 10 ln 11 = 24
    "high": ([150, 160], [100.0, 100.0]),  # value = 10 ln 201 = 53
}


def write_model(path: Path) -> None:
    """p_active = sigmoid(2 log_days_13w - 2), transactions = log_frequency,
    value = 10 log_value_13w."""
    col = {n: i for i, n in enumerate(VALUE_FEATURE_NAMES)}
    w = np.zeros((len(VALUE_FEATURE_NAMES), 3), np.float32)
    w[col["log_days_13w"], 0] = 2.0
    w[col["log_frequency"], 1] = 1.0
    w[col["log_value_13w"], 2] = 10.0
    b = np.array([-2.0, 0.0, 0.0], np.float32)
    nodes = [
        helper.make_node("MatMul", ["features", "W"], ["xw"]),
        helper.make_node("Add", ["xw", "b"], ["z"]),
        *(helper.make_node("Gather", ["z", f"i{k}"], [f"g{k}"], axis=1) for k in range(3)),
        helper.make_node("Sigmoid", ["g0"], ["p_active"]),
        helper.make_node("Identity", ["g1"], ["expected_transactions"]),
        helper.make_node("Identity", ["g2"], ["expected_value"]),
    ]
    inits = [
        helper.make_tensor("W", TensorProto.FLOAT, w.shape, w.ravel()),
        helper.make_tensor("b", TensorProto.FLOAT, b.shape, b),
        *(helper.make_tensor(f"i{k}", TensorProto.INT64, [], [k]) for k in range(3)),
    ]
    out = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B"])
        for n in ("p_active", "expected_transactions", "expected_value")
    ]
    inp = [helper.make_tensor_value_info("features", TensorProto.FLOAT, ["B", w.shape[0]])]
    graph = helper.make_graph(nodes, "value", inp, out, inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Bundle:
    root = tmp_path_factory.mktemp("value_bundle")
    write_model(root / "user_value.onnx")
    users, ts, values = [], [], []
    for user, (days, vals) in SNAPSHOT.items():
        for day, value in zip(days, vals, strict=True):
            for part in (0.25, 0.75):  # two events per day: one transaction of the summed value
                users.append(user)
                ts.append(day * SECONDS_PER_DAY + 3600)
                values.append(value * part)
    table = pa.table(
        {
            "user_id": users,
            "item_id": ["cd"] * len(users),
            "timestamp": ts,
            "rating": [float("nan")] * len(users),
            "value": values,
        }
    )
    pq.write_table(table, root / "interactions.parquet")
    files = {"user_value.onnx": "-", "interactions.parquet": "-"}
    return Bundle(root=root, manifest={"version": "v-test", "files": files, "value": SECTION})


class Clock:
    """A settable wall clock (unix seconds), noon of `day`."""

    def __init__(self, day: int) -> None:
        self.now = 0.0
        self.set_day(day)

    def set_day(self, day: int) -> None:
        self.now = day * SECONDS_PER_DAY + 12 * 3600.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def scorer(bundle) -> UserValueScorer:
    """Serving on the manifest's as_of_day, where the snapshot users' segments are known."""
    return UserValueScorer.from_bundle(bundle, clock=Clock(AS_OF))


def test_segments_follow_the_documented_thresholds(scorer):
    ids = ["dormant", "at_risk", "active", "high", "stranger"]
    scores = scorer.score(ids)
    assert [s.user_id for s in scores] == ids
    assert [s.segment for s in scores] == ["DORMANT", "AT_RISK", "ACTIVE", "HIGH_VALUE", "NEW"]
    assert scores[0].p_active == pytest.approx(1 / (1 + math.exp(2)), rel=1e-5)
    assert scores[3].expected_value == pytest.approx(10 * math.log(201), rel=1e-5)
    assert scores[3].expected_transactions == pytest.approx(math.log(2), rel=1e-5)
    assert all(s.horizon_weeks == 39.0 for s in scores)


def test_new_user_scores_zero(scorer):
    (score,) = scorer.score(["stranger"])
    assert (score.p_active, score.expected_transactions, score.expected_value) == (0, 0, 0)


def test_live_activity_overrides_the_snapshot(scorer):
    live = {"dormant": (np.array([170, 180]), np.array([100.0, 100.0], np.float32))}
    (score,) = scorer.score(["dormant"], live)
    assert score.segment == "HIGH_VALUE"


def test_as_of_day_zero_is_today_by_the_clock(bundle):
    clock = Clock(260)
    scorer = UserValueScorer.from_bundle(bundle, clock=clock)
    live = {"late": (np.array([250, 260]), np.array([5.0, 5.0], np.float32))}
    assert scorer.today() == 260
    assert scorer.score(["late"], live)[0].segment == "ACTIVE"  # today: both days count
    assert scorer.score(["late"], live) == scorer.score(["late"], live, as_of_day=260)
    # Neither the manifest's as_of_day (200) nor the live activity's last day moves "now".
    clock.set_day(230)
    assert scorer.score(["late"], live)[0].segment == "NEW"  # both days lie in the future


def test_an_explicit_as_of_day_overrides_the_clock(scorer):
    live = {"late": (np.array([250, 260]), np.array([5.0, 5.0], np.float32))}
    assert scorer.score(["late"], live, as_of_day=255)[0].expected_transactions == 0.0
    assert scorer.score(["late"], live, as_of_day=260)[0].segment == "ACTIVE"


def test_serving_time_far_past_the_data_drifts_users_to_dormant(bundle):
    clock = Clock(AS_OF)
    scorer = UserValueScorer.from_bundle(bundle, clock=clock)
    ids = ["at_risk", "active", "high"]
    assert [s.segment for s in scorer.score(ids)] == ["AT_RISK", "ACTIVE", "HIGH_VALUE"]
    clock.set_day(AS_OF + 365)  # a year later, nothing new: the cache must not answer
    later = scorer.score(ids)
    assert [s.segment for s in later] == ["DORMANT"] * 3
    assert all(s.p_active == pytest.approx(1 / (1 + math.exp(2)), rel=1e-5) for s in later)


def test_a_clock_far_past_the_data_is_logged_at_load(bundle, caplog):
    horizon_days = int(SECTION["horizon_weeks"] * 7)
    with caplog.at_level("WARNING", logger="services.uservalue.scorer"):
        fresh = UserValueScorer.from_bundle(bundle, clock=Clock(AS_OF + horizon_days))
    assert fresh.days_past_data() == horizon_days and not caplog.records
    with caplog.at_level("WARNING", logger="services.uservalue.scorer"):
        stale = UserValueScorer.from_bundle(bundle, clock=Clock(AS_OF + horizon_days + 1))
    assert stale.days_past_data() == horizon_days + 1
    assert len(caplog.records) == 1 and "retrain" in caplog.records[0].getMessage()


def test_fresh_activity_today_makes_a_known_user_more_active(bundle):
    """Issue 16: a known user with old activity is scored now; after 15 events today their
    P(active) must go up. With the clock frozen at the end of the data (day 200) the first
    score was as of day 200 (ACTIVE, 0.55) and the second as of today (0.35): it went down."""
    today = 10_000  # decades after the data (1997 on the day numbering)
    clock = Clock(today)
    scorer = UserValueScorer.from_bundle(bundle, clock=clock)
    (before,) = scorer.score(["active"])
    assert before.segment == "DORMANT"  # nothing in the 13 weeks before today

    old = np.array([150, 160]) * SECONDS_PER_DAY + 3600
    now = int(clock())
    stamps = np.r_[old, now - 60 * np.arange(15)[::-1]]
    values = np.r_[[5.0, 5.0], np.full(15, 2.0)]
    days, per_day = daily_activity(stamps, values)
    np.testing.assert_array_equal(days, [150, 160, today])  # 15 events: one active day
    (after,) = scorer.score(["active"], {"active": (days, per_day)})
    assert after.p_active > before.p_active
    assert after.p_active == pytest.approx(1 / (1 + math.exp(2 - 2 * math.log(2))), rel=1e-5)
    assert after.segment == "AT_RISK"


def test_activity_after_an_explicit_as_of_day_is_ignored(scorer):
    assert scorer.score(["active"], as_of_day=100)[0].segment == "NEW"


def test_provider_is_reported(scorer):
    assert scorer.provider == "CPUExecutionProvider"


@pytest.mark.parametrize(
    ("ids", "activities"),
    [
        ([], None),
        ([""], None),
        (["u"] * (MAX_USERS_PER_CALL + 1), None),
        (["u"], {"u": (np.array([1, 2]), np.array([1.0], np.float32))}),
        (["u"], {"u": (np.array([1, 2]), np.array([1.0, np.nan], np.float32))}),
        (["u"], {"u": (np.array([2, 1]), np.array([1.0, 1.0], np.float32))}),
    ],
    ids=["empty", "empty-id", "too-many", "mismatched", "nan", "descending"],
)
def test_bad_input_is_invalid_argument(scorer, ids, activities):
    with pytest.raises(InvalidArgument):
        scorer.score(ids, activities)


def test_snapshot_matches_daily_activity_per_user(bundle):
    from services.contract.features import daily_activity
    from services.uservalue.scorer import activity_snapshot

    snapshot = activity_snapshot(bundle.path("interactions.parquet"))
    frame = pq.read_table(bundle.path("interactions.parquet")).to_pandas()
    assert set(snapshot) == set(SNAPSHOT)
    assert list(snapshot) == sorted(snapshot)  # id order, as np.unique gave it
    for user, group in frame.groupby("user_id"):
        days, values = daily_activity(group["timestamp"].to_numpy(), group["value"].to_numpy())
        np.testing.assert_array_equal(snapshot[user][0], days)
        np.testing.assert_allclose(snapshot[user][1], values, rtol=1e-6)
        assert snapshot[user][0].dtype == np.int64 and snapshot[user][1].dtype == np.float32


def test_cached_scores_equal_fresh_ones_and_follow_new_activity(bundle):
    cached = UserValueScorer.from_bundle(bundle, cache_users=8, clock=Clock(AS_OF))
    fresh = UserValueScorer.from_bundle(bundle, cache_users=0, clock=Clock(AS_OF))
    ids = ["dormant", "late", "stranger", "dormant"]
    first = cached.score(ids)
    assert cached.score(ids) == first == fresh.score(ids)
    assert cached._cache.hits >= len(ids)  # the second call was answered from the cache
    # New live activity is a different key: the score follows it instead of the cached one.
    live = {"dormant": (np.array([170, 180]), np.array([100.0, 100.0], np.float32))}
    (updated,) = cached.score(["dormant"], live)
    assert updated == fresh.score(["dormant"], live)[0]
    assert updated != first[0]
    assert fresh._cache.hits == 0 and len(fresh._cache) == 0


def test_cache_is_bounded(bundle):
    scorer = UserValueScorer.from_bundle(bundle, cache_users=2)
    scorer.score([f"u{i}" for i in range(5)])
    assert len(scorer._cache) == 2


def test_prime_caches_the_snapshot_users_and_live_copies_of_it_hit(bundle):
    primed = UserValueScorer.from_bundle(bundle, cache_users=8, clock=Clock(AS_OF))
    fresh = UserValueScorer.from_bundle(bundle, cache_users=0, clock=Clock(AS_OF))
    assert primed.warm_up() == len(SNAPSHOT) == len(primed._cache)
    ids = list(SNAPSHOT)
    # The live activity the gateway sends is the feature service's copy of the snapshot: the
    # same score, answered from the primed entries.
    live = {u: primed._snapshot[u] for u in ids}
    hits = primed._cache.hits
    assert primed.score(ids, live) == primed.score(ids) == fresh.score(ids)
    assert primed._cache.hits == hits + 2 * len(ids)
    # Other live activity is its own entry, scored afresh.
    other = {"active": (np.array([150, 160, 199]), np.array([5.0, 5.0, 5.0], np.float32))}
    assert primed.score(["active"], other) == fresh.score(["active"], other)
    assert primed.score(["active"], other)[0] != primed.score(["active"])[0]


def test_prime_stops_at_the_cache_capacity(bundle):
    scorer = UserValueScorer.from_bundle(bundle, cache_users=2, clock=Clock(AS_OF))
    assert scorer.prime() == 2 == len(scorer._cache)
    assert UserValueScorer.from_bundle(bundle, cache_users=0).prime() == 0


def test_users_without_activity_are_new_next_to_scored_ones(scorer):
    empty = {"ghost": (np.zeros(0, np.int64), np.zeros(0, np.float32))}
    scores = scorer.score(["ghost", "high", "stranger", "active"], empty)
    assert [s.segment for s in scores] == ["NEW", "HIGH_VALUE", "NEW", "ACTIVE"]
    assert scores[0] == scores[2].__class__("ghost", 0.0, 0.0, 0.0, "NEW", 39.0, "USD")
