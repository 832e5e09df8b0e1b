"""The operator's day one as a test: `recserve serve` refuses a misspelt setting with a
suggestion before starting anything; under the supervisor with metrics on (one base port, a port
per process), kill -9 of each backend in turn under 50 req/s: each comes back by itself on its
port, the gateway (never restarted) fails no request outside the documented kill window, and
every process still serves /metrics at the end. (Tags of added items filtering at once:
tests/integration/test_item_sync_split.py; every documented command: test_doc_commands.py.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from loadtest.fault import FaultPlan, markdown, run_fault
from services.launcher import BACKENDS, METRICS_OFFSETS, free_port

REPO = Path(__file__).resolve().parents[2]


def _free_block(n: int) -> int:
    """A base port with the n ports from it free right now."""
    for _ in range(50):
        base = free_port()
        if base + n < 65536 and all(_free(base + i) for i in range(n)):
            return base
    raise RuntimeError("no block of free ports")


def _free(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.mark.timeout(60)
def test_serve_refuses_a_misspelt_setting_before_starting_anything(tiny_bundle, tmp_path):
    env = {**os.environ, "RECSERVE_FEEDBACK_LOG_DIR": str(tmp_path)}
    run = subprocess.run(
        [sys.executable, "-m", "recserve.cli", "serve", "--artifacts", str(tiny_bundle.parent)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 1
    assert "RECSERVE_FEEDBACK_LOG_DIR (did you mean RECSERVE_FEATURE_LOG_DIR?)" in run.stderr
    assert "SERVING" not in run.stdout and "Traceback" not in run.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_each_backend_killed_under_load_comes_back_by_itself(tiny_bundle, tmp_path):
    base = _free_block(len(METRICS_OFFSETS))
    plan = FaultPlan(
        backends=BACKENDS, rate=50.0, warmup_s=2.0, settle_s=1.5,
        down_s=0.5,  # the supervisor's first backoff under `recserve serve`
        restart_budget_s=3.0, recover_s=3.0, clean_tail_s=1.0,
    )  # fmt: skip
    result = run_fault(
        tiny_bundle.parent, plan, version=tiny_bundle.name, log_dir=tmp_path,
        env={"RECSERVE_METRICS_PORT": str(base)},
    )  # fmt: skip
    report = markdown(result, "walkthrough")
    assert result["passed"], report
    assert not result["gateway_restarted"] and result["restarts"]["gateway"] == 0, report
    for phase in result["phases"]:
        assert phase["failure_ratio_outside"] < plan.max_failure_ratio, (phase["backend"], report)
        assert phase["recovered"], (phase["backend"], report)
        assert result["restarts"][phase["backend"]] == 1, result["restarts"]
    print(report)  # restart -> SERVING per backend, with `pytest -s`
    ports = {name: base + offset for name, offset in METRICS_OFFSETS.items()}
    assert result["metrics_ports"] == ports
    assert result["metrics_up"] == sorted(ports), result["metrics_up"]
