"""Strict configuration: every RECSERVE_* name the code, docs and deployment files use is known;
an unknown one stops a service at start-up with a did-you-mean; the effective configuration a
service logs masks secrets and shows state paths absolute."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from services.contract.errors import ConfigError
from services.platform import env_names
from services.platform.config import env_int, env_path, env_str
from services.platform.security import SecuritySettings

REPO = Path(__file__).resolve().parents[2]
SOURCES = ("services", "recserve", "loadtest", "bench", "training", "tests", "docker", "deploy",
           "docs", "scripts", ".ci")  # fmt: skip
NAME = re.compile(r"RECSERVE_[A-Z0-9_]*[A-Z0-9]\b")
TEST_ONLY = {"RECSERVE_X_PORT", "RECSERVE_FEEDBACK_LOG_DIR", "RECSERVE_NOT_A_THING"}


def _files():
    yield from (REPO / name for name in ("README.md", "Makefile", "pyproject.toml"))
    for top in SOURCES:
        for path in (REPO / top).rglob("*"):
            if path.is_file() and path.suffix in (".py", ".md", ".yaml", ".yml", ".env", ""):
                yield path


def test_every_recserve_name_in_the_repository_is_known():
    used: dict[str, str] = {}
    for path in _files():
        for name in NAME.findall(path.read_text(errors="replace")):
            used.setdefault(name, str(path.relative_to(REPO)))
    unknown = {n: where for n, where in used.items() if n not in env_names.KNOWN | TEST_ONLY}
    assert not unknown, f"add these to services/platform/env_names.py (or fix the typo): {unknown}"


def test_an_unknown_name_is_refused_with_a_suggestion():
    env = {"RECSERVE_FEEDBACK_LOG_DIR": "/x", "RECSERVE_ARTIFACTS": "a", "OTHER": "1"}
    with pytest.raises(ConfigError) as caught:
        env_names.check_environment(env)
    message = str(caught.value)
    assert "RECSERVE_FEEDBACK_LOG_DIR (did you mean RECSERVE_FEATURE_LOG_DIR?)" in message
    assert "RECSERVE_ARTIFACTS" not in message and "OTHER" not in message
    env_names.check_environment({"RECSERVE_RANKING_METRICS_PORT": "1", "RECSERVE_TARGET": "x"})


def test_a_service_with_a_misspelt_variable_exits_2_with_one_line(tmp_path):
    env = {**os.environ, "RECSERVE_FEEDBACK_LOG_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    run = subprocess.run([sys.executable, "-m", "services.uservalue"], env=env, timeout=60,
                         capture_output=True, text=True)  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip().splitlines() == [
        "uservalue: error: unknown setting: RECSERVE_FEEDBACK_LOG_DIR (did you mean "
        "RECSERVE_FEATURE_LOG_DIR?); recserve reads only the RECSERVE_* variables listed in "
        "docs/operations.md"
    ]


def test_effective_configuration_masks_keys_and_shows_defaults(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RECSERVE_INTERNAL_API_KEY", "s3cret-internal-key-0123")
    monkeypatch.setenv("RECSERVE_REDIS_URL", "redis://user:hunter2@redis:6379/0")
    monkeypatch.setenv("RECSERVE_MAX_K", "7")
    SecuritySettings.from_env()
    env_str("RECSERVE_REDIS_URL", "")
    env_int("RECSERVE_MAX_K", 100)
    env_int("RECSERVE_CANDIDATES", 200)
    assert env_path("RECSERVE_EXPOSURE_LOG", "state/x.jsonl") == tmp_path / "state/x.jsonl"
    line = env_names.describe()
    assert "\n" not in line
    assert "RECSERVE_INTERNAL_API_KEY=***" in line and "s3cret" not in line
    assert "RECSERVE_REDIS_URL=redis://user:***@redis:6379/0" in line and "hunter2" not in line
    assert "RECSERVE_MAX_K=7" in line and "RECSERVE_CANDIDATES=200" in line
    assert f"RECSERVE_EXPOSURE_LOG={tmp_path}/state/x.jsonl" in line
