"""Degradation instead of failure: circuit breaker, retries, the feedback spool, fallbacks with
every filter still applied, and the Prometheus counters that record all of it."""

from __future__ import annotations

import asyncio
import random
import time
import urllib.request

import numpy as np
import pytest

from recserve.v1 import ranking_pb2, ranking_pb2_grpc
from services.contract.errors import ConfigError, InvalidArgument, NotFound, Unavailable
from services.contract.types import Event, EventKind, FilterSpec, UserState
from services.gateway.config import Backend, GatewaySettings
from services.gateway.resilience import (
    BreakerSettings,
    CircuitBreaker,
    CircuitOpen,
    NotSent,
    RetryPolicy,
    StageGuard,
    State,
    request_budget,
)
from services.gateway.stages import DeadlineExceeded
from services.gateway.stages.remote import RemoteRanking
from services.launcher import free_port
from services.platform import metrics
from services.platform.server import create_server
from tests.services.test_gateway_pipeline import Down, FakeFeatures, ids, make_pipeline, run


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **kw) -> tuple[CircuitBreaker, list[State]]:
    changes: list[State] = []
    settings = BreakerSettings(**{"failures": 3, "cooldown_s": 5.0, "probes": 2, **kw})
    b = CircuitBreaker("x", settings, clock=clock, on_change=lambda _n, s: changes.append(s))
    return b, changes


# --- circuit breaker ------------------------------------------------------------------------


def test_breaker_opens_after_consecutive_failures_and_fails_fast():
    clock = Clock()
    b, changes = breaker(clock)
    for _ in range(2):
        assert b.allow()
        b.record(False)
    assert b.state is State.CLOSED
    b.record(True)  # a success resets the streak
    for _ in range(3):
        assert b.allow()
        b.record(False)
    assert b.state is State.OPEN and changes == [State.OPEN]
    assert not b.allow()
    clock.now += 4.9
    assert not b.allow(), "still cooling down"


def test_half_open_limits_probes_and_closes_after_enough_successes():
    clock = Clock()
    b, changes = breaker(clock)
    for _ in range(3):
        b.allow()
        b.record(False)
    clock.now += 5.0
    assert b.state is State.HALF_OPEN
    assert b.allow() and b.allow()
    assert not b.allow(), "only two probes at a time"
    b.record(True)
    assert b.state is State.HALF_OPEN
    assert b.allow()
    b.record(True)
    assert b.state is State.CLOSED
    assert changes == [State.OPEN, State.HALF_OPEN, State.CLOSED]


def test_a_failed_probe_opens_the_circuit_again():
    clock = Clock()
    b, changes = breaker(clock)
    for _ in range(3):
        b.allow()
        b.record(False)
    clock.now += 5.0
    assert b.allow()
    b.record(False)
    assert b.state is State.OPEN and not b.allow()
    assert changes == [State.OPEN, State.HALF_OPEN, State.OPEN]


def test_a_cancelled_probe_frees_its_slot():
    clock = Clock()
    b, _ = breaker(clock, probes=1)
    for _ in range(3):
        b.allow()
        b.record(False)
    clock.now += 5.0
    assert b.allow() and not b.allow()
    b.release()
    assert b.allow()


def test_breaker_opens_on_the_failure_ratio_over_the_window():
    clock = Clock()
    b, _ = breaker(clock, failures=1000, failure_ratio=0.5, window_s=10.0, min_calls=20)
    for i in range(19):  # alternating: never 3 in a row, ratio ~0.5 but too few calls
        b.allow()
        b.record(i % 2 == 0)
    assert b.state is State.CLOSED
    b.allow()
    b.record(False)  # 20 calls, 10 failed
    assert b.state is State.OPEN


def test_failures_older_than_the_window_do_not_count():
    clock = Clock()
    b, _ = breaker(clock, failures=1000, failure_ratio=0.5, window_s=10.0, min_calls=20)
    for _ in range(15):
        b.record(False)
        clock.now += 0.01
    clock.now += 11.0
    for _ in range(15):
        b.record(True)
    b.record(False)
    assert b.state is State.CLOSED


def test_breaker_settings_are_validated():
    with pytest.raises(ValueError):
        BreakerSettings(failure_ratio=0.0)
    with pytest.raises(ValueError):
        BreakerSettings(probes=0)


# --- retry policy and guard -----------------------------------------------------------------


def test_backoff_is_full_jitter_and_capped():
    policy = RetryPolicy(attempts=5, base_s=0.01, max_s=0.05)
    rng = random.Random(1)
    for n, cap in enumerate([0.01, 0.02, 0.04, 0.05, 0.05]):
        draws = [policy.backoff(n, rng) for _ in range(200)]
        assert min(draws) >= 0.0 and max(draws) <= cap
        assert max(draws) > 0.7 * cap, "spread over the whole interval"


def test_only_unavailable_is_retryable():
    assert RetryPolicy.retryable(Unavailable("x")) and RetryPolicy.retryable(NotSent("x"))
    for exc in (InvalidArgument("x"), NotFound("x"), DeadlineExceeded("x"), CircuitOpen("x")):
        assert not RetryPolicy.retryable(exc)


class Attempts:
    """attempt(timeout) raising the queued errors, then answering "ok"."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.timeouts: list[float] = []

    async def __call__(self, timeout_s: float) -> str:
        self.timeouts.append(timeout_s)
        if self.errors:
            raise self.errors.pop(0)
        return "ok"


def guard(deadline_s: float = 1.0, attempts: int = 3, **kw) -> StageGuard:
    b = CircuitBreaker("x", BreakerSettings(failures=100))
    return StageGuard("x", deadline_s, b, RetryPolicy(attempts, 0.001, 0.002), **kw)


def test_guard_retries_unavailable_within_the_deadline():
    calls = Attempts(Unavailable("a"), NotSent("b"))
    retries, errors = [], []
    g = guard(on_retry=lambda: retries.append(1), on_error=errors.append)
    assert run(g.run(calls)) == "ok"
    assert len(calls.timeouts) == 3 and len(retries) == 2
    assert errors == ["UNAVAILABLE", "UNAVAILABLE"]
    assert all(0 < t <= 1.0 for t in calls.timeouts)
    assert calls.timeouts == sorted(calls.timeouts, reverse=True), "the deadline shrinks"


def test_guard_gives_up_after_the_attempts():
    calls = Attempts(*[Unavailable(str(i)) for i in range(5)])
    with pytest.raises(Unavailable, match="2"):
        run(guard(attempts=3).run(calls))
    assert len(calls.timeouts) == 3


@pytest.mark.parametrize("error", [InvalidArgument("bad"), NotFound("who"), DeadlineExceeded("t")])
def test_guard_does_not_retry_answers_or_deadlines(error):
    calls = Attempts(error)
    with pytest.raises(type(error)):
        run(guard().run(calls))
    assert len(calls.timeouts) == 1


def test_guard_never_retries_a_write():
    calls = Attempts(Unavailable("a"))
    with pytest.raises(Unavailable):
        run(guard().run(calls, idempotent=False))
    assert len(calls.timeouts) == 1


def test_guard_never_sleeps_past_the_deadline():
    sleeps: list[float] = []

    async def sleep(s: float) -> None:
        sleeps.append(s)

    b = CircuitBreaker("x", BreakerSettings(failures=100))
    g = StageGuard("x", 0.005, b, RetryPolicy(10, 1.0, 1.0), sleep=sleep, rng=random.Random(0))
    calls = Attempts(*[Unavailable(str(i)) for i in range(10)])
    with pytest.raises(Unavailable):
        run(g.run(calls))
    assert len(calls.timeouts) < 10 and all(s < 0.005 for s in sleeps)


def test_guard_fails_fast_when_the_circuit_is_open():
    b = CircuitBreaker("x", BreakerSettings(failures=2, cooldown_s=60))
    g = StageGuard("x", 1.0, b, RetryPolicy(1))
    for _ in range(2):
        with pytest.raises(Unavailable):
            run(g.run(Attempts(Unavailable("down"))))
    calls = Attempts()
    with pytest.raises(CircuitOpen):
        run(g.run(calls))
    assert calls.timeouts == [], "not even tried"


def test_invalid_argument_counts_as_a_healthy_backend():
    b = CircuitBreaker("x", BreakerSettings(failures=2))
    g = StageGuard("x", 1.0, b, RetryPolicy(1))
    for _ in range(5):
        with pytest.raises(InvalidArgument):
            run(g.run(Attempts(InvalidArgument("bad"))))
    assert b.state is State.CLOSED


def test_a_request_budget_caps_each_stage_deadline():
    calls = Attempts()

    async def scenario():
        with request_budget(0.05):
            await guard(deadline_s=1.0).run(calls)
        await guard(deadline_s=1.0).run(calls)

    run(scenario())
    assert calls.timeouts[0] <= 0.05 < 0.9 < calls.timeouts[1]


def test_a_spent_budget_falls_back_without_calling_or_blaming_the_backend():
    calls = Attempts()
    b = CircuitBreaker("x", BreakerSettings(failures=1))
    g = StageGuard("x", 1.0, b, RetryPolicy(1))

    async def scenario():
        with request_budget(0.0), pytest.raises(DeadlineExceeded):
            await g.run(calls)
        # The call times out because the budget cut it short: not the backend's fault.
        with request_budget(0.01), pytest.raises(DeadlineExceeded):
            await g.run(Attempts(DeadlineExceeded("late")))

    run(scenario())
    assert calls.timeouts == [] and b.state is State.CLOSED


# --- a real remote backend: down, then up ---------------------------------------------------


class Ranking(ranking_pb2_grpc.RankingServiceServicer):
    async def Rank(self, request, context):
        n = len(request.item_indices)
        return ranking_pb2.RankResponse(
            p_positive=[0.5] * n, rating=[3.0] * n, p_interact=[0.5] * n
        )


USER = UserState("u1", True, 1, np.zeros(3, np.int64), np.array([5, 2, 0], np.int64))


@pytest.mark.timeout(60)
def test_remote_backend_down_opens_its_breaker_then_recovers_after_restart():
    env = {
        "RECSERVE_GATEWAY_BREAKER_FAILURES": "3",
        "RECSERVE_GATEWAY_BREAKER_COOLDOWN_MS": "200",
        "RECSERVE_GATEWAY_BREAKER_PROBES": "1",
        "RECSERVE_GATEWAY_RETRY_ATTEMPTS": "2",
    }
    settings = GatewaySettings.from_env(env)
    port = free_port()
    # A unique backend name keeps this test's series apart from other tests' in REGISTRY.
    name = f"ranking-{port}"
    from services.gateway.stages.remote import guard_for

    def register(server):
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(Ranking(), server)

    async def scenario():
        stage = RemoteRanking(Backend(name, f"127.0.0.1:{port}", 1.0))
        stage.guard = guard_for(name, 1.0, settings.resilience)
        try:
            errors = []
            for _ in range(4):
                with pytest.raises(Unavailable) as caught:
                    await stage.rank(USER, np.array([1, 2], np.int64))
                errors.append(type(caught.value))
            assert errors[0] is NotSent and errors[-1] is CircuitOpen  # refused, then open
            assert metrics.sample("recserve_circuit_state", {"backend": name}) == 2
            t0 = time.monotonic()
            with pytest.raises(CircuitOpen):
                await stage.rank(USER, np.array([1], np.int64))
            assert time.monotonic() - t0 < 0.05, "an open circuit answers at once"
            server, _ = await create_server(register, port=port, service_names=["r"])
            try:
                await asyncio.sleep(0.3)  # the cool-down
                deadline = time.monotonic() + 20
                while True:  # the channel reconnects (max backoff 2 s), the probe closes it
                    try:
                        scores = await stage.rank(USER, np.array([1, 2], np.int64))
                        break
                    except Unavailable:
                        assert time.monotonic() < deadline, "never recovered"
                        await asyncio.sleep(0.1)
                assert scores.p_interact.tolist() == [0.5, 0.5]
                assert metrics.sample("recserve_circuit_state", {"backend": name}) == 0
            finally:
                await server.stop(None)
        finally:
            await stage.close()

    asyncio.run(scenario())
    labels = {"backend": name}
    assert metrics.sample("recserve_circuit_opened_total", labels) >= 1
    assert metrics.sample("recserve_retries_total", labels) >= 2
    assert (
        metrics.sample("recserve_stage_errors_total", {"stage": name, "code": "UNAVAILABLE"}) >= 3
    )


class SlowRanking(Ranking):
    async def Rank(self, request, context):
        await asyncio.sleep(0.5)
        return await super().Rank(request, context)


@pytest.mark.timeout(60)
def test_a_slow_backend_trips_its_breaker_so_later_calls_fall_back_at_once():
    from services.gateway.stages.remote import guard_for

    settings = GatewaySettings.from_env({"RECSERVE_GATEWAY_BREAKER_FAILURES": "2"})

    def register(server):
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(SlowRanking(), server)

    async def scenario():
        server, port = await create_server(register, service_names=["r"])
        name = f"slow-ranking-{port}"
        stage = RemoteRanking(Backend(name, f"127.0.0.1:{port}", 0.1))
        stage.guard = guard_for(name, 0.1, settings.resilience)
        try:
            for _ in range(2):
                t0 = time.monotonic()
                with pytest.raises(DeadlineExceeded):
                    await stage.rank(USER, np.array([1], np.int64))
                assert time.monotonic() - t0 < 0.4, "not retried past the stage deadline"
            t0 = time.monotonic()
            with pytest.raises(CircuitOpen):
                await stage.rank(USER, np.array([1], np.int64))
            assert time.monotonic() - t0 < 0.05
            return name
        finally:
            await stage.close()
            await server.stop(None)

    name = asyncio.run(scenario())
    code = {"stage": name, "code": "DEADLINE_EXCEEDED"}
    assert metrics.sample("recserve_stage_errors_total", code) == 2
    assert metrics.sample("recserve_retries_total", {"backend": name}) == 0


def test_connect_gives_every_backend_its_own_breaker():
    from services.contract.features import FeatureSpec
    from services.gateway.stages.remote import connect

    env = {"RECSERVE_GATEWAY_RETRY_ATTEMPTS": "2", "RECSERVE_GATEWAY_BREAKER_FAILURES": "9"}

    async def scenario():
        stages = connect(GatewaySettings.from_env(env), FeatureSpec())
        await stages.close()
        return [stages.features, stages.retrieval, stages.ranking, stages.uservalue]

    clients = asyncio.run(scenario())
    assert len({id(c.guard.breaker) for c in clients}) == 4
    assert [c.guard.breaker.name for c in clients] == [
        "feature",
        "retrieval",
        "ranking",
        "uservalue",
    ]
    assert all(c.guard.retry.attempts == 2 for c in clients)
    assert all(c.guard.breaker.settings.failures == 9 for c in clients)


# --- fallbacks: flagged, counted, filters applied ---------------------------------------------


def fallbacks(stage: str, reason: str) -> float:
    return metrics.sample("recserve_fallbacks_total", {"stage": stage, "reason": reason})


def test_retrieval_down_gives_popular_items_with_every_filter_applied():
    before = fallbacks("retrieval", "unavailable")
    pipeline = make_pipeline(retrieval=Down())
    unfiltered = run(pipeline.recommend("u1", 10, FilterSpec()))
    assert set(ids(unfiltered)) == {f"i{i}" for i in range(1, 11)}, "the 10 most popular"
    filters = FilterSpec(
        exclude_seen=True, include_tags=("Comedy",), exclude_tags=("Action",), exclude_items=("i7",)
    )
    answer = run(pipeline.recommend("u1", 5, filters, ["i11"]))
    assert answer.fallbacks == ("retrieval_unavailable",) and not answer.cold_start
    # Comedy = odd items; minus Action (i3, i9), seen (i1), recent (i11), excluded (i7).
    assert ids(answer) == ["i5"]
    assert fallbacks("retrieval", "unavailable") == before + 2


def test_every_fallback_is_counted_by_stage_and_reason():
    cases = {
        ("ranking", "deadline_exceeded"): dict(ranking=Down(slow=True)),
        ("features", "unavailable"): dict(features=Down()),
        ("uservalue", "unavailable"): dict(uservalue=Down()),
    }
    for (stage, reason), overrides in cases.items():
        before = fallbacks(stage, reason)
        answer = run(make_pipeline(**overrides).recommend("u1", 3, FilterSpec(exclude_seen=True)))
        assert answer.fallbacks == (f"{stage}_{reason}",)
        assert fallbacks(stage, reason) == before + 1


class OpenCircuit:
    def __getattr__(self, name: str):
        async def fail(*args, **kwargs):
            raise CircuitOpen("ranking service: circuit open")

        return fail


def test_an_open_circuit_is_its_own_fallback_reason():
    before = fallbacks("ranking", "circuit_open")
    answer = run(make_pipeline(ranking=OpenCircuit()).recommend("u1", 4, FilterSpec()))
    assert answer.fallbacks == ("ranking_circuit_open",)
    assert ids(answer) == ["i12", "i11", "i10", "i9"], "retrieval order"
    assert fallbacks("ranking", "circuit_open") == before + 1


# --- feedback spool ---------------------------------------------------------------------------


class FlakyFeatures(FakeFeatures):
    """apply_events raises `error` while `down` is set."""

    def __init__(self, catalog, error: type[Exception] = CircuitOpen) -> None:
        super().__init__(catalog)
        self.down = True
        self.error = error
        self.applied: list[list[str]] = []

    async def apply_events(self, events):
        if self.down:
            raise self.error("feature service down")
        self.applied.append([e.item_id for e in events])
        return await super().apply_events(events)


def _event(item: str) -> Event:
    return Event("u1", item, EventKind.CLICK, 1_700_000_000)


def test_feedback_is_held_while_the_feature_service_is_unreachable_then_delivered_in_order():
    from tests.services.test_gateway_pipeline import make_catalog

    async def scenario():
        features = FlakyFeatures(make_catalog())
        pipeline = make_pipeline(features=features)
        pipeline.spool.capacity = 10_000  # opt-in (RECSERVE_GATEWAY_FEEDBACK_SPOOL)
        pipeline.spool.retry_s = 0.01
        before = fallbacks("feedback", "spooled")
        assert await pipeline.feedback([_event("i9")]) == 1
        assert await pipeline.feedback([_event("i5"), _event("i7")]) == 2
        assert len(pipeline.spool) == 3 and fallbacks("feedback", "spooled") == before + 2
        features.down = False
        for _ in range(200):
            if not len(pipeline.spool):
                break
            await asyncio.sleep(0.01)
        assert features.applied == [["i9", "i5", "i7"]]
        assert await pipeline.feedback([_event("i3")]) == 1  # direct again
        assert features.applied[-1] == ["i3"]
        await pipeline.close()

    asyncio.run(scenario())


def test_an_ambiguous_feedback_failure_is_not_held_or_retried():
    from tests.services.test_gateway_pipeline import make_catalog

    features = FlakyFeatures(make_catalog(), error=Unavailable)
    pipeline = make_pipeline(features=features)
    with pytest.raises(Unavailable):
        run(pipeline.feedback([_event("i9")]))
    assert len(pipeline.spool) == 0


def test_by_default_feedback_is_refused_not_held_while_the_feature_service_is_down():
    """Acknowledged means durable: without the opt-in spool nothing is acknowledged that only
    lives in the gateway's memory."""
    from tests.services.test_gateway_pipeline import make_catalog

    async def scenario():
        pipeline = make_pipeline(features=FlakyFeatures(make_catalog()))
        assert pipeline.spool.capacity == 0
        with pytest.raises(Unavailable):
            await pipeline.feedback([_event("i1")])
        assert len(pipeline.spool) == 0

    asyncio.run(scenario())


def test_a_full_spool_answers_unavailable():
    from tests.services.test_gateway_pipeline import make_catalog

    async def scenario():
        pipeline = make_pipeline(features=FlakyFeatures(make_catalog()))
        pipeline.spool.capacity = 2
        await pipeline.feedback([_event("i1"), _event("i2")])
        with pytest.raises(Unavailable, match="spool is full"):
            await pipeline.feedback([_event("i3")])
        await pipeline.close()

    asyncio.run(scenario())


# --- settings and the /metrics endpoint ------------------------------------------------------


def test_resilience_settings_come_from_the_environment():
    s = GatewaySettings.from_env(
        {
            "RECSERVE_GATEWAY_RETRY_ATTEMPTS": "4",
            "RECSERVE_GATEWAY_RETRY_BACKOFF_MS": "20",
            "RECSERVE_GATEWAY_RETRY_BACKOFF_MAX_MS": "80",
            "RECSERVE_GATEWAY_BREAKER_FAILURES": "7",
            "RECSERVE_GATEWAY_BREAKER_FAILURE_RATIO": "0.25",
            "RECSERVE_GATEWAY_BREAKER_COOLDOWN_MS": "1500",
            "RECSERVE_GATEWAY_FEEDBACK_SPOOL": "0",
            "RECSERVE_GATEWAY_RECOMMEND_BUDGET_MS": "450",
            "RECSERVE_METRICS_PORT": "9464",
        }
    )
    assert s.resilience.retry == RetryPolicy(4, 0.02, 0.08)
    assert s.resilience.breaker.failures == 7 and s.resilience.breaker.failure_ratio == 0.25
    assert s.resilience.breaker.cooldown_s == 1.5
    assert s.limits.feedback_spool == 0 and s.metrics.port == 9464
    assert s.limits.recommend_budget_s == 0.45
    assert GatewaySettings.from_env({}).limits.recommend_budget_s is None, "off by default"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("RECSERVE_GATEWAY_RETRY_ATTEMPTS", "0"),
        ("RECSERVE_GATEWAY_RETRY_ATTEMPTS", "many"),
        ("RECSERVE_GATEWAY_RETRY_BACKOFF_MAX_MS", "1"),  # below the base (10)
        ("RECSERVE_GATEWAY_BREAKER_FAILURE_RATIO", "1.5"),
        ("RECSERVE_GATEWAY_BREAKER_COOLDOWN_MS", "-1"),
        ("RECSERVE_METRICS_PORT", "70000"),
    ],
)
def test_bad_resilience_settings_fail_at_start_up(name, value):
    with pytest.raises(ConfigError, match=name):
        GatewaySettings.from_env({name: value})


def test_metrics_endpoint_serves_the_counters():
    assert metrics.start_metrics_http(0) is None, "port 0 = off"
    metrics.FALLBACKS.labels("ranking", "unavailable").inc()
    server = metrics.start_metrics_http(free_port())
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        text = urllib.request.urlopen(url, timeout=10).read().decode()
    finally:
        server.shutdown()
        server.server_close()
    assert 'recserve_fallbacks_total{reason="unavailable",stage="ranking"}' in text
    for name in ("recserve_stage_errors", "recserve_retries", "recserve_circuit_state"):
        assert f"# TYPE {name}" in text
