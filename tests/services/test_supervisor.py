"""The supervisor behind `recserve serve`: a crashed process comes back on its own port while
the others keep running; one that crashes too often is given up on alone; stop ends them all."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest

from services.contract.errors import ConfigError
from services.launcher import metrics_ports
from services.platform.healthcheck import check
from services.supervisor import LaunchError, RestartPolicy, ServiceSpec, Supervisor

REPO = Path(__file__).resolve().parents[2]
FAST = RestartPolicy(backoff_s=0.2, max_backoff_s=1.0, max_crashes=3, window_s=60.0)


def _supervisor(tmp_path: Path, names: tuple[str, ...], policy: RestartPolicy = FAST):
    from services.launcher import free_port

    lines: list[str] = []
    sup = Supervisor(log_dir=tmp_path, policy=policy, announce=lines.append)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    for name in names:
        port = free_port()
        sup.add(ServiceSpec(name, [sys.executable, "-m", "tests.health_server", str(port)],
                            env, port))  # fmt: skip
    sup.start([list(names)], timeout=60)
    sup.watch()
    return sup, lines


def _until(predicate, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.timeout(120)
def test_a_killed_service_comes_back_on_its_port_and_the_others_keep_running(tmp_path):
    sup, lines = _supervisor(tmp_path, ("a", "b"))
    try:
        before = sup.pids()
        sup.kill("a")
        _until(lambda: sup.status()["a"].restarts == 1 and sup.status()["a"].state == "serving")
        after = sup.status()
        assert after["a"].pid not in (None, before["a"])
        assert after["a"].exit_codes == (-signal.SIGKILL,)
        assert after["b"].pid == before["b"] and after["b"].restarts == 0
        assert check(f"127.0.0.1:{after['a'].port}")
        assert any("a exited with code -9; restarting in 0.2s" in line for line in lines), lines
        assert any("a SERVING again" in line for line in lines), lines
    finally:
        codes = sup.stop()
    assert codes == {"a": 0, "b": 0}
    assert sup.pids() == {}


@pytest.mark.timeout(120)
def test_too_many_crashes_in_the_window_gives_up_on_that_service_alone(tmp_path):
    sup, lines = _supervisor(tmp_path, ("a", "b"))
    try:
        b_pid = sup.pid("b")
        for crash in range(FAST.max_crashes):
            _until(lambda: sup.status()["a"].state == "serving")
            sup.kill("a")
            _until(lambda n=crash: len(sup.status()["a"].exit_codes) == n + 1)
        _until(lambda: sup.failed() == ["a"])
        time.sleep(2 * FAST.max_backoff_s)  # nothing restarts it
        assert sup.status()["a"].pid is None and sup.status()["a"].restarts == FAST.max_crashes - 1
        assert sup.pid("b") == b_pid
        assert any("giving up on it after 3 crashes" in line for line in lines), lines
    finally:
        sup.stop()


def test_backoff_doubles_up_to_its_cap():
    policy = RestartPolicy(backoff_s=0.5, max_backoff_s=3.0)
    assert [policy.delay_s(n) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    with pytest.raises(ValueError):
        RestartPolicy(max_crashes=0)


def test_a_service_that_cannot_start_is_reported_with_its_log(tmp_path):
    sup = Supervisor(log_dir=tmp_path, announce=lambda line: None)
    argv = [sys.executable, "-c", "import sys; print('bad config'); sys.exit(2)"]
    sup.add(ServiceSpec("x", argv, dict(os.environ), 1))
    with pytest.raises(LaunchError, match="x exited with code 2") as caught:
        sup.start([["x"]], timeout=30)
    assert "bad config" in str(caught.value)


def test_metrics_ports_are_a_base_plus_a_fixed_offset_per_service():
    names = ("feature", "retrieval", "ranking", "uservalue", "gateway")
    ports = metrics_ports(names, {"RECSERVE_METRICS_PORT": "9100"})
    assert ports == {"gateway": 9100, "feature": 9101, "retrieval": 9102, "ranking": 9103,
                     "uservalue": 9104}  # fmt: skip
    assert metrics_ports(names, {}) == {}
    own = {"RECSERVE_METRICS_PORT": "9100", "RECSERVE_RANKING_METRICS_PORT": "9200"}
    assert metrics_ports(names, own)["ranking"] == 9200
    clash = {"RECSERVE_METRICS_PORT": "9100", "RECSERVE_RANKING_METRICS_PORT": "9100"}
    with pytest.raises(ConfigError, match="collide"):
        metrics_ports(names, clash)
