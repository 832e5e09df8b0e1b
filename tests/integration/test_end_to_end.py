"""End to end: the launcher starts the five services as separate processes from the tiny
bundle, a Recommend answer travels through all five, and every process stops cleanly."""

from __future__ import annotations

from pathlib import Path

import pytest

from recserve.client import RecserveClient
from services.launcher import Launcher
from services.platform.healthcheck import check


@pytest.mark.slow
def test_five_processes_answer_recommend_and_stop_cleanly(tiny_bundle: Path, known_users, tmp_path):
    launcher = Launcher(tiny_bundle.parent, tiny_bundle.name, mode="split", log_dir=tmp_path)
    launcher.start(timeout=180)
    try:
        assert set(launcher.pids()) == {
            "feature",
            "retrieval",
            "ranking",
            "uservalue",
            "gateway",
        }
        assert len(set(launcher.pids().values())) == 5
        assert all(check(target) for target in launcher.targets.values())
        with RecserveClient(launcher.gateway_target, timeout=30) as client:
            reply = client.recommend(known_users[0], k=10)
    finally:
        codes = launcher.stop()
    assert len(reply.items) == 10 and all(item.title for item in reply.items)
    assert list(reply.fallbacks) == [], "every stage answered over gRPC"
    assert reply.HasField("user_value") and reply.model_version == tiny_bundle.name
    assert codes == dict.fromkeys(codes, 0) and len(codes) == 5, codes
