"""Step schedule: raise the offered rate step by step and report the highest rate whose step met
the SLO (p99 <= slo_p99_ms, error ratio <= max_error_ratio, and the answers kept up with the
offered rate). Stops at the first failing step; optional bisection between the last passing and
the first failing rate narrows it down."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

from loadtest.runner import LoadSpec, RunResult, TrafficConfig, run

KEEP_UP = 0.95  # answered/offered below this: the system (or generator) could not keep up


def geometric_rates(start: float, factor: float, max_rate: float) -> list[float]:
    if start <= 0 or factor <= 1 or max_rate < start:
        raise ValueError("need 0 < start <= max_rate and factor > 1")
    rates, rate = [], start
    while rate <= max_rate * (1 + 1e-9):
        rates.append(round(rate, 1))
        rate *= factor
    return rates


def verdict(summary: dict, slo_p99_ms: float, max_error_ratio: float) -> tuple[bool, str]:
    p99 = summary["latency_ms"].get("p99", float("inf"))
    scheduled = summary.get("scheduled_rps") or summary["offered_rps"] or 0.0
    if summary["requests"] == 0:
        return False, "no answers"
    if p99 > slo_p99_ms:
        return False, f"p99 {p99:.1f} ms > {slo_p99_ms:g} ms"
    if summary["error_ratio"] > max_error_ratio:
        return False, f"errors {summary['error_ratio']:.2%} > {max_error_ratio:.2%}"
    if scheduled and summary["achieved_rps"] < KEEP_UP * scheduled:
        return False, f"answered {summary['achieved_rps']:.0f}/s of {scheduled:.0f}/s sent"
    return True, "ok"


def find_max_rate(
    spec: LoadSpec,
    traffic: TrafficConfig,
    rates: Sequence[float],
    slo_p99_ms: float,
    *,
    max_error_ratio: float = 0.01,
    refine: int = 0,
    runner: Callable[[LoadSpec, TrafficConfig], RunResult] = run,
    on_step: Callable[[dict], None] | None = None,
) -> dict:
    """-> {"slo_p99_ms", "max_rate" (None if no step passed), "steps": [summary + verdict],
    "_recorders": {rate: Recorder} (not JSON: pop it before writing)}."""
    if spec.mode != "open":
        raise ValueError("the step schedule drives open-loop load")
    steps: list[dict] = []
    recorders: dict[float, object] = {}

    def step(rate: float) -> bool:
        result = runner(replace(spec, rate=rate), traffic)
        summary = result.summary()
        ok, why = verdict(summary, slo_p99_ms, max_error_ratio)
        summary.update(rate=rate, meets_slo=ok, verdict=why)
        recorders[rate] = result.recorder
        steps.append(summary)
        if on_step is not None:
            on_step(summary)
        return ok

    best, failed = None, None
    for rate in rates:
        if step(rate):
            best = rate
        else:
            failed = rate
            break
    lo, hi = best, failed
    for _ in range(refine if lo is not None and hi is not None else 0):
        mid = round((lo + hi) / 2, 1)
        if mid in (lo, hi):
            break
        if step(mid):
            lo = best = mid
        else:
            hi = mid
    return {
        "slo_p99_ms": slo_p99_ms,
        "max_rate": best,
        "first_failing_rate": hi,
        "steps": steps,
        "_recorders": recorders,
    }
