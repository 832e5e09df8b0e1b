"""Experiment assignment is deterministic, sticky, weighted and salted; configs fail fast."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from services.contract.errors import ConfigError
from services.gateway.experiments import (
    HOLDOUT,
    Arm,
    Experiment,
    ExposureLog,
    exposures_for,
    load_experiments,
    parse_experiments,
)
from training.experiments.report import read_exposures

USERS = [f"user-{i}" for i in range(20_000)]


def _experiment(salt: str = "s1", holdout: float = 0.1, weights=(1.0, 3.0)) -> Experiment:
    arms = tuple(Arm(f"arm{i}", w, {}) for i, w in enumerate(weights))
    return Experiment(name="exp", salt=salt, arms=arms, holdout=holdout)


def test_assignment_is_sticky_and_follows_the_configured_shares() -> None:
    exp = _experiment()
    first = [exp.assign(u) for u in USERS]
    assert first == [exp.assign(u) for u in USERS]  # same user, same arm, no state
    counts = Counter(first)
    for group, share in exp.expected_shares().items():
        assert counts[group] / len(USERS) == pytest.approx(share, abs=0.015), group
    assert exp.expected_shares() == pytest.approx({"arm0": 0.225, "arm1": 0.675, HOLDOUT: 0.1})


def test_salts_split_independently() -> None:
    a, b = _experiment("salt-a", 0.0, (1, 1)), _experiment("salt-b", 0.0, (1, 1))
    pairs = Counter((a.assign(u), b.assign(u)) for u in USERS)
    for count in pairs.values():  # independent halves: each of the 4 cells holds ~1/4
        assert count / len(USERS) == pytest.approx(0.25, abs=0.015)


def test_holdout_is_served_like_the_control() -> None:
    exp = Experiment("e", "s", (Arm("control", 1, {"rank": True}), Arm("t", 1, {"rank": False})))
    assert exp.settings_for(HOLDOUT) == {"rank": True}
    assert exp.settings_for("t") == {"rank": False}


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"experiments": [{"name": "e", "salt": "s", "arms": [{"name": "a"}]}]}, "two arms"),
        ({"experiments": [{"name": "e", "salt": "", "arms": [{"name": "a"}, {"name": "b"}]}]},
         "non-empty"),
        ({"experiments": [{"name": "e", "salt": "s", "arms": [{"name": "a"}, {"name": "a"}]}]},
         "distinct"),
        ({"experiments": [{"name": "e", "salt": "s", "holdout": 1.0,
                           "arms": [{"name": "a"}, {"name": "b"}]}]}, "holdout"),
        ({"experiments": [{"name": "e", "salt": "s",
                           "arms": [{"name": "a", "weight": 0}, {"name": "b"}]}]}, "weight"),
        ({"experiments": [{"name": "e", "salt": "s",
                           "arms": [{"name": "a", "settings": {"colour": 1}}, {"name": "b"}]}]},
         "unknown setting"),
        ({"experiments": [{"name": "e", "salt": "s",
                           "arms": [{"name": "a", "settings": {"candidates": -5}},
                                    {"name": "b"}]}]},
         "candidates must be int"),
        ({"experiments": [
            {"name": "e1", "salt": "s", "arms": [{"name": "a", "settings": {"rank": False}},
                                                 {"name": "b"}]},
            {"name": "e2", "salt": "t", "arms": [{"name": "a", "settings": {"rank": True}},
                                                 {"name": "b"}]}]}, "both set 'rank'"),
        ({"experiments": [{"name": "e"}]}, "experiment config"),
    ],
)  # fmt: skip
def test_bad_configs_fail_with_a_clear_message(config: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_experiments(config)


def test_load_experiments_reports_the_file(tmp_path: Path) -> None:
    path = tmp_path / "experiments.json"
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="RECSERVE_EXPERIMENTS_FILE"):
        load_experiments(path)
    arms = [{"name": "control"}, {"name": "fast", "settings": {"candidates": 50}}]
    path.write_text(
        json.dumps({"experiments": [{"name": "e", "salt": "s", "holdout": 0.05, "arms": arms}]})
    )
    (exp,) = load_experiments(path)
    assert exp.arms[1].settings == {"candidates": 50}
    assert exp.holdout == 0.05


def test_exposure_log_round_trip(tmp_path: Path) -> None:
    exp = _experiment()
    log = ExposureLog(tmp_path / "exposures.jsonl", flush_every=2)
    written = []
    for i, user in enumerate(USERS[:5]):
        for exposure in exposures_for([exp], user, ["i1", "i2"], request_id=f"r{i}", now=100.0 + i):
            log.write(exposure)
            written.append(exposure)
    log.close()
    assert log.written == 5
    assert read_exposures(tmp_path / "exposures.jsonl") == written
    assert {e.arm for e in written} <= {"arm0", "arm1", HOLDOUT}
