"""`python -m services.<name>`: fail fast on bad config, serve health, stop on SIGTERM."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

REPO = Path(__file__).resolve().parents[2]
SERVICES = {
    "feature": "recserve.v1.FeatureService",
    "retrieval": "recserve.v1.RetrievalService",
    "ranking": "recserve.v1.RankingService",
}
if importlib.util.find_spec("services.uservalue.scorer") is not None:
    SERVICES["uservalue"] = "recserve.v1.UserValueService"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECSERVE_")}
    return {**env, "RECSERVE_LOG_FORMAT": "json", **extra}


def _run(name: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", f"services.{name}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_missing_bundle_exits_2_with_one_line(name, tmp_path):
    done = _run(name, _env(RECSERVE_ARTIFACTS=str(tmp_path)))
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1 and "LATEST" in done.stderr


def test_invalid_port_exits_2_naming_the_variable(tmp_path):
    done = _run("feature", _env(RECSERVE_FEATURE_PORT="http"))
    assert done.returncode == 2 and "RECSERVE_FEATURE_PORT" in done.stderr


def _wait_for_port(proc: subprocess.Popen, deadline: float) -> int:
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        if not line.startswith("{"):
            continue  # onnxruntime's native logger writes its own lines
        record = json.loads(line)
        if record["msg"].startswith("listening on"):
            return int(record["msg"].split()[2].rsplit(":", 1)[1])
    raise AssertionError(f"server did not start; exit code {proc.poll()}")


@pytest.mark.parametrize("name", sorted(SERVICES))
def test_serves_health_and_stops_on_sigterm(name, tiny_bundle):
    env = _env(
        RECSERVE_ARTIFACTS=str(tiny_bundle.parent),
        RECSERVE_BUNDLE_VERSION=tiny_bundle.name,
        **{f"RECSERVE_{name.upper()}_PORT": "0", "RECSERVE_GRACE_SECONDS": "1"},
    )
    proc = subprocess.Popen(
        [sys.executable, "-m", f"services.{name}"],
        cwd=REPO,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        port = _wait_for_port(proc, time.monotonic() + 60)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = health_pb2_grpc.HealthStub(channel)
            reply = stub.Check(health_pb2.HealthCheckRequest(service=SERVICES[name]), timeout=10)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()
