"""The step schedule's search logic with a deterministic stand-in for the runner."""

from __future__ import annotations

import pytest

from loadtest.recorder import Recorder
from loadtest.runner import LoadSpec, RunResult, TrafficConfig
from loadtest.steps import find_max_rate, geometric_rates, verdict


def fake_runner(capacity: float, calls: list[float]):
    """A system whose p99 is 5 ms below `capacity` req/s and 500 ms above it."""

    def runner(spec: LoadSpec, traffic: TrafficConfig) -> RunResult:
        calls.append(spec.rate)
        rec = Recorder()
        latency = 0.005 if spec.rate <= capacity else 0.5
        for i in range(int(spec.rate)):
            rec.record(i / spec.rate, latency, "OK", "recommend", 0.0)
        return RunResult(spec, rec, int(spec.rate), measured_s=1.0, wall_s=1.0)

    return runner


SPEC = LoadSpec(target="127.0.0.1:1", duration_s=1.0, warmup_s=0.0)


def test_reports_the_highest_passing_step_and_stops_at_the_first_failure():
    calls: list[float] = []
    out = find_max_rate(
        SPEC, TrafficConfig(), [100, 200, 400, 800, 1600], 50.0, runner=fake_runner(500, calls)
    )
    assert out["max_rate"] == 400 and out["first_failing_rate"] == 800
    assert calls == [100, 200, 400, 800]
    assert [s["meets_slo"] for s in out["steps"]] == [True, True, True, False]
    assert "p99" in out["steps"][-1]["verdict"]


def test_bisection_narrows_the_rate_between_pass_and_fail():
    calls: list[float] = []
    out = find_max_rate(
        SPEC, TrafficConfig(), [100, 200, 400, 800], 50.0, refine=3, runner=fake_runner(500, calls)
    )
    assert calls[4:] == [600, 500, 550]
    assert out["max_rate"] == 500


def test_no_passing_step_gives_none():
    out = find_max_rate(SPEC, TrafficConfig(), [1000], 50.0, runner=fake_runner(10, []))
    assert out["max_rate"] is None


def test_a_step_that_cannot_keep_up_or_errors_fails_even_with_a_good_p99():
    base = {
        "requests": 100,
        "latency_ms": {"p99": 1.0},
        "error_ratio": 0.0,
        "offered_rps": 1000.0,
        "achieved_rps": 990.0,
    }
    assert verdict(base, 50, 0.01) == (True, "ok")
    assert not verdict({**base, "achieved_rps": 500.0}, 50, 0.01)[0]
    assert not verdict({**base, "error_ratio": 0.05}, 50, 0.01)[0]


def test_geometric_rates():
    assert geometric_rates(100, 2, 1000) == [100, 200, 400, 800]
    with pytest.raises(ValueError):
        geometric_rates(100, 1.0, 1000)
