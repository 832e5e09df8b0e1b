"""bench's scale reporting: per-process start-up and memory, the two-bundle comparison."""

from __future__ import annotations

import sys
import time

from bench.__main__ import markdown
from bench.topology import ProcessGroup


def test_process_group_reports_resident_memory_of_its_processes(tmp_path):
    with ProcessGroup(tmp_path) as group:
        group.spawn("sleeper", [sys.executable, "-c", "import time; time.sleep(30)"])
        deadline = time.monotonic() + 10
        while (memory := group.memory_mb())["sleeper"]["rss_mb"] == 0:
            assert time.monotonic() < deadline and "sleeper" in group.pids(), group.log("sleeper")
            time.sleep(0.05)
    assert set(memory) == {"sleeper"}
    assert 0 < memory["sleeper"]["rss_mb"] <= memory["sleeper"]["peak_rss_mb"]
    assert not group.pids()  # stopped on exit


def _system(rate: float) -> dict:
    step = {
        "rate": rate,
        "achieved_rps": rate,
        "verdict": "ok",
        "latency_ms": {"p50": 5.0, "p99": 15.0, "max": 20.0},
    }
    return {
        "slo_p99_ms": 20.0,
        "max_rate": rate,
        "steps": [step],
        "processes": {
            "startup_s": {"gateway0": 36.4},
            "memory_at_start": {"gateway0": {"rss_mb": 5800.0, "peak_rss_mb": 5900.0}},
            "memory_after_load": {"gateway0": {"rss_mb": 5750.0, "peak_rss_mb": 5920.0}},
            "cpu_s_during_steps": {"gateway0": 41.25},
        },
    }


def test_markdown_shows_both_bundles_the_ratio_and_the_processes():
    bundle = {
        "path": "/tmp/a/v",
        "n_items": 1_000_000,
        "n_users": 1_000_000,
        "index_type": "IDMap2,IVF4000,Flat,IP",
        "index": {"nprobe": 44, "recall": 0.9503},
    }
    result = {
        "command": "python -m bench",
        "bundle": "/tmp/a/v",
        "candidates": 200,
        "k": 20,
        "mix": "recommend=1",
        "started": "now",
        "bundles": {"main": bundle, "baseline": {**bundle, "n_items": 1682, "index": {}}},
        "systems": {"embedded": _system(288.4), "embedded@baseline": _system(320.4)},
        "scale_ratio": {"embedded": 0.9},
    }
    text = markdown(result)
    assert (
        "| main: `/tmp/a/v` | 1,000,000 | 1,000,000 | IDMap2,IVF4000,Flat,IP | 44 | 0.9503 |"
        in text
    )
    assert "embedded **0.9**" in text
    assert "| embedded@baseline | gateway0 | 36.4 | 5800.0 | 5750.0 | 5920.0 | 41.25 |" in text
