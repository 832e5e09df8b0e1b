"""The load engine against a fake gateway on port 0: coordinated omission accounted for,
deadlines, status counts, bounds. Latencies are asserted with wide margins (shared CI box)."""

from __future__ import annotations

import asyncio
import time

import grpc
import pytest

from loadtest.runner import LoadSpec, run_async
from loadtest.traffic import Population, Traffic, parse_mix


def _traffic(mix: str = "recommend=1") -> Traffic:
    return Traffic(Population.synthetic(50, 50), parse_mix(mix))


def _run(fake_gateway, behaviour: dict, traffic: Traffic | None = None, **spec):
    async def scenario():
        async with fake_gateway(**behaviour) as (target, servicer):
            result = await run_async(LoadSpec(target=target, **spec), traffic or _traffic())
            return result, servicer

    return asyncio.run(scenario())


def test_open_loop_times_requests_from_their_due_time_through_a_server_stall(fake_gateway):
    """200 req/s for 2 s; the server freezes from 0.5 s to 1.0 s. ~100 requests fall due during
    the freeze and wait up to 0.5 s each: the open-loop tail must show it."""
    result, _ = _run(
        fake_gateway, {"stall_after_s": 0.5, "stall_s": 0.5}, rate=200, duration_s=2.0, warmup_s=0.0
    )
    s = result.summary()
    assert s["requests"] == 400
    assert s["latency_ms"]["p99"] >= 400
    assert s["latency_ms"]["p90"] >= 150  # ~12% of requests waited more than 0.25 s
    assert s["status"] == {"recommend/OK": 400}
    assert s["achieved_rps"] == pytest.approx(200, rel=0.1)


def test_closed_loop_hides_the_same_stall_in_its_percentiles(fake_gateway):
    """The same freeze seen by one closed-loop client: a single slow request, a small p99 —
    the coordinated omission that open-loop load exists to avoid."""
    result, _ = _run(
        fake_gateway,
        {"stall_after_s": 0.5, "stall_s": 0.5},
        mode="closed",
        concurrency=1,
        duration_s=2.0,
        warmup_s=0.0,
    )
    s = result.summary()
    assert s["latency_ms"]["max"] >= 400
    assert s["latency_ms"]["p90"] < 50
    assert s["requests"] > 200


def test_a_late_generator_still_times_from_the_due_time(fake_gateway):
    """The generator itself blocks for 0.3 s (a GC pause, a busy core): the requests it owes
    leave late, and that lateness is in their latency and in the generator-lag histogram."""

    class StallingTraffic(Traffic):
        def next(self):
            self.calls = getattr(self, "calls", 0) + 1
            if self.calls == 50:
                time.sleep(0.3)  # blocks the event loop, like a stalled load generator
            return super().next()

    traffic = StallingTraffic(Population.synthetic(50, 50), {"recommend": 1.0})
    result, _ = _run(fake_gateway, {}, traffic, rate=200, duration_s=1.5, warmup_s=0.0)
    s = result.summary()
    assert s["requests"] == 300
    assert s["generator_lag_ms"]["max"] >= 250
    assert s["latency_ms"]["max"] >= 250
    assert s["latency_ms"]["p90"] >= 50  # ~60 requests owed during the pause


def test_a_full_in_flight_window_delays_sends_but_not_the_clock(fake_gateway):
    result, _ = _run(
        fake_gateway,
        {"stall_after_s": 0.3, "stall_s": 0.5},
        rate=200,
        duration_s=1.5,
        warmup_s=0.0,
        max_in_flight=4,
    )
    s = result.summary()
    assert s["requests"] == 300
    assert s["latency_ms"]["p99"] >= 400
    assert s["generator_lag_ms"]["max"] >= 300  # the sends themselves waited for a slot


def test_deadlines_are_per_request_and_statuses_are_counted(fake_gateway):
    result, _ = _run(
        fake_gateway,
        {"hang_feedback": True, "predict_status": grpc.StatusCode.NOT_FOUND},
        _traffic("recommend=0.6,feedback=0.2,predict=0.2"),
        rate=200,
        duration_s=1.0,
        warmup_s=0.0,
        deadlines_ms={"feedback": 50.0},
        default_deadline_ms=2000.0,
    )
    s = result.summary()
    status = s["status"]
    assert set(status) == {"recommend/OK", "feedback/DEADLINE_EXCEEDED", "predict/NOT_FOUND"}
    assert sum(status.values()) == s["requests"] == 200
    assert s["errors"] == status["feedback/DEADLINE_EXCEEDED"] + status["predict/NOT_FOUND"]
    assert 45 <= s["by_kind"]["feedback"]["p50"] < 500  # ended by its own 50 ms deadline


def test_warmup_is_sent_but_not_counted(fake_gateway):
    result, servicer = _run(fake_gateway, {}, rate=100, duration_s=0.5, warmup_s=0.5)
    s = result.summary()
    assert servicer.calls == 100
    assert s["warmup_requests"] == 50 and s["requests"] == 50


def test_runs_are_bounded_by_count(fake_gateway):
    result, servicer = _run(
        fake_gateway, {}, rate=1000, duration_s=5.0, warmup_s=0.0, max_requests=30
    )
    assert servicer.calls == 30 and result.sent == 30
    closed, servicer = _run(
        fake_gateway,
        {},
        mode="closed",
        concurrency=3,
        duration_s=5.0,
        warmup_s=0.0,
        max_requests=40,
    )
    assert servicer.calls == 40 and closed.sent == 40


def test_poisson_open_loop_offers_the_requested_rate(fake_gateway):
    result, _ = _run(
        fake_gateway, {}, rate=300, duration_s=2.0, warmup_s=0.0, schedule="poisson", seed=3
    )
    assert result.summary()["requests"] == pytest.approx(600, rel=0.12)


def test_an_unreachable_target_shows_as_errors_not_a_hang():
    from loadtest.runner import LoadSpec as Spec

    spec = Spec(
        target="127.0.0.1:1", rate=50, duration_s=0.2, warmup_s=0.0, default_deadline_ms=200
    )
    t0 = time.monotonic()
    result = asyncio.run(run_async(spec, _traffic()))
    assert time.monotonic() - t0 < 15
    s = result.summary()
    assert s["requests"] == 10 and s["errors"] == 10


def test_latencies_keep_microseconds_on_uvloop(fake_gateway):
    """The harness times with perf_counter, not loop.time(): uvloop's loop.time() moves in whole
    milliseconds, which would turn sub-millisecond answers into 0 or 1 ms."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario():
        async with fake_gateway() as (target, _):
            spec = LoadSpec(target=target, mode="closed", concurrency=1, duration_s=0.5)
            return await run_async(spec, _traffic())

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        result = runner.run(scenario())
    latency = result.summary()["latency_ms"]
    assert latency["count"] > 50
    # a loopback answer takes a fraction of a millisecond, timed to the microsecond
    assert 0.01 < latency["p50"] < 1.0 and latency["p50"] != round(latency["p50"])
