"""A/B report: attribution, interval arithmetic on hand-computed cases, SRM, and a replay."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.gateway.experiments import Exposure
from training.experiments.report import (
    Feedback,
    UserTotals,
    _ratio,
    _wilson,
    attribute,
    experiment_report,
    to_markdown,
)


def test_attribution_counts_events_on_exposed_items_inside_the_window_once() -> None:
    exposures = [
        Exposure("e", "a", "u1", ("i1", "i2"), time=100.0),
        Exposure("e", "a", "u1", ("i1", "i3"), time=200.0),
        Exposure("e", "b", "u2", ("i9",), time=100.0),
    ]
    feedback = [
        Feedback("u1", "i1", "click", 150.0),  # first exposure only (no double count)
        Feedback("u1", "i3", "purchase", 250.0, 7.5),  # second exposure
        Feedback("u1", "i2", "click", 50.0),  # before any exposure
        Feedback("u1", "i4", "click", 150.0),  # not shown
        Feedback("u2", "i9", "click", 100.0 + 3601.0),  # outside the window
        Feedback("u3", "i1", "click", 150.0),  # never exposed
    ]
    groups = attribute(exposures, feedback, window_s=3600.0)
    assert groups[("e", "a")] == {"u1": UserTotals(4, 2, 1, 7.5)}
    assert groups[("e", "b")] == {"u2": UserTotals(1, 0, 0, 0.0)}


def test_ratio_and_wilson_match_hand_computed_values() -> None:
    num, den = np.array([1.0, 0.0, 3.0]), np.array([2.0, 2.0, 4.0])
    r, var = _ratio(num, den)
    assert r == pytest.approx(0.5)
    resid = num - 0.5 * den  # [0, -1, 1] -> sample variance 1
    assert var == pytest.approx(1.0 / (3 * (8 / 3) ** 2))
    assert resid.var(ddof=1) == pytest.approx(1.0)
    w = _wilson(5, 10)  # p=0.5, n=10 -> 0.5 ± 1.96*sqrt(0.025+0.0096)/1.384
    assert w.estimate == 0.5
    assert w.low == pytest.approx(0.2366, abs=1e-4) and w.high == pytest.approx(0.7634, abs=1e-4)


def _users(n: int, clicks: int, impressions: int = 10) -> dict[str, UserTotals]:
    return {f"u{i}": UserTotals(impressions, clicks, 0, 0.0) for i in range(n)}


def test_sample_ratio_mismatch_is_flagged() -> None:
    shares = {"a": 0.5, "b": 0.5}
    fine = experiment_report("e", {"a": _users(500, 1), "b": _users(510, 1)}, shares, "a")
    assert not fine.srm and fine.srm_p_value > 0.5
    skewed = experiment_report("e", {"a": _users(500, 1), "b": _users(620, 1)}, shares, "a")
    assert skewed.srm and skewed.srm_p_value < 1e-3
    assert "SAMPLE RATIO MISMATCH" in to_markdown([skewed], 60)


def test_no_difference_gives_an_interval_around_zero() -> None:
    rng = np.random.default_rng(0)
    groups = {
        arm: {f"{arm}{i}": UserTotals(10, int(rng.binomial(10, 0.1)), 0, 0.0) for i in range(800)}
        for arm in ("a", "b")
    }
    report = experiment_report("e", groups, {"a": 0.5, "b": 0.5}, "a")
    ctr = next(c for c in report.comparisons if c.metric == "ctr")
    assert ctr.difference.low < 0 < ctr.difference.high
    assert ctr.p_value > 0.01
    assert math.isclose(report.arms[0].ctr.estimate, 0.1, abs_tol=0.01)


@pytest.mark.timeout(300)
def test_movielens_replay_detects_the_real_quality_difference(movielens) -> None:
    """Item-kNN beats popularity offline; the A/B report must see it with a CI excluding 0."""
    from training.experiments.simulate import simulate
    from training.split import temporal_split

    split = temporal_split(movielens.events)
    sim = simulate(split.train, split.test, arms=("popularity", "item-knn"), holdout=0.1)
    truth = sim.offline_hit_rate["item-knn"] - sim.offline_hit_rate["popularity"]
    assert truth > 0.01
    groups = attribute(sim.exposures, sim.feedback, window_s=3600.0)
    report = experiment_report(
        "simulated",
        {arm: users for (_, arm), users in groups.items()},
        sim.experiment.expected_shares(),
        control="popularity",
    )
    assert not report.srm
    assert {a.arm for a in report.arms} == {"popularity", "item-knn", "holdout"}
    ctr = next(c for c in report.comparisons if c.arm == "item-knn" and c.metric == "ctr")
    assert ctr.difference.low > 0, ctr
    assert ctr.difference.estimate == pytest.approx(truth, abs=0.03)
    holdout = next(c for c in report.comparisons if c.arm == "holdout" and c.metric == "ctr")
    assert holdout.difference.low < 0 < holdout.difference.high  # holdout is served like control
