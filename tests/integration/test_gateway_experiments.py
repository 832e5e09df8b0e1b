"""A/B arms through the real gateway: each user gets its arm's pipeline settings, and every
Recommend writes an exposure the ab-report can join with feedback."""

from __future__ import annotations

import pytest

from recserve.client import RecserveClient
from services.gateway.app import build_pipeline, start_gateway
from services.gateway.experiments import (
    HOLDOUT,
    Arm,
    Experiment,
    ExperimentRunner,
    ExposureLog,
)
from tests.integration.conftest import gateway_settings
from training.experiments.report import read_exposures

EXPERIMENT = Experiment(
    name="ranker-on-off",
    salt="it",
    holdout=0.1,
    arms=(Arm("control", 1.0, {}), Arm("retrieval-only", 1.0, {"rank": False})),
)


@pytest.fixture(scope="module")
def experiment_gateway(bundle, loop_thread, tmp_path_factory):
    log_path = tmp_path_factory.mktemp("exp") / "exposures.jsonl"
    runner = ExperimentRunner([EXPERIMENT], ExposureLog(log_path, flush_every=1))
    settings = gateway_settings(bundle, "embedded")

    async def go():
        pipeline = build_pipeline(settings, bundle)
        return await start_gateway(settings, pipeline, port=0, experiments=runner)

    server, port = loop_thread.run(go())
    yield f"127.0.0.1:{port}", runner, log_path
    loop_thread.run(server.stop(None))
    runner.close()


@pytest.mark.timeout(300)
def test_each_user_gets_its_arm_and_an_exposure(experiment_gateway, known_users) -> None:
    target, _runner, log_path = experiment_gateway
    users = known_users[1:41]
    arms = {}
    with RecserveClient(target, timeout=30.0) as client:
        for user in users:
            reply = client.recommend(user, k=5)
            arm = EXPERIMENT.assign(user)
            arms[user] = arm
            interaction = [item.stage_scores.interaction for item in reply.items]
            assert not reply.fallbacks
            if arm == "retrieval-only":  # ranking not called: no P(interact) on the items
                assert all(p == 0.0 for p in interaction), user
            else:  # control and holdout are ranked
                assert any(p > 0.0 for p in interaction), user
    assert {"control", "retrieval-only"} <= set(arms.values())
    exposures = read_exposures(log_path)
    assert [e.user_id for e in exposures] == users
    for exposure in exposures:
        assert exposure.experiment == "ranker-on-off"
        assert exposure.arm == arms[exposure.user_id]
        assert exposure.arm in {"control", "retrieval-only", HOLDOUT}
        assert len(exposure.items) == 5 and exposure.request_id
