"""services.contract.value_features: the user-value features shared by training and serving."""

from __future__ import annotations

import numpy as np
import pytest

from services.contract.value_features import (
    N_VALUE_FEATURES,
    SCALAR_MAX_DAYS,
    VALUE_FEATURE_NAMES,
    value_features,
    value_features_batch,
    value_features_flat,
    value_features_one,
)


def feature_dict(vector: np.ndarray) -> dict[str, float]:
    return dict(zip(VALUE_FEATURE_NAMES, vector.tolist(), strict=True))


def test_hand_computed_features_of_a_small_activity():
    # Active on days 100, 107, 121 (10, 20, 40 dollars); day 130 lies after as_of and is ignored.
    days = np.array([100, 107, 121, 130], np.int64)
    values = np.array([10, 20, 40, 99], np.float32)
    f = feature_dict(value_features(days, values, as_of_day=128))
    expected = {
        "has_activity": 1.0,
        "log_frequency": np.log1p(2),
        "log_recency_weeks": np.log1p(3),
        "log_t_weeks": np.log1p(4),
        "log_weeks_since_last": np.log1p(1),
        "recency_ratio": 0.75,
        "log_repeat_rate_per_year": np.log1p(52 * 0.5),
        "log_monetary": np.log1p(30),
        "log_first_value": np.log1p(10),
        "log_mean_value": np.log1p(70 / 3),
        "log_max_value": np.log1p(40),
        "log_gap_mean_weeks": np.log1p(1.5),
        "log_gap_std_weeks": np.log1p(0.5),
        "log_overdue": np.log1p(1 / 1.5),
        "log_days_4w": np.log1p(2),
        "log_days_13w": np.log1p(3),
        "log_days_26w": np.log1p(3),
        "log_value_13w": np.log1p(70),
        "trend_13w": 0.0,
    }
    assert set(expected) == set(VALUE_FEATURE_NAMES)
    for name, want in expected.items():
        assert f[name] == pytest.approx(want, abs=1e-5), name


def test_no_activity_gives_the_zero_vector():
    empty = value_features(np.zeros(0, np.int64), np.zeros(0, np.float32), as_of_day=50)
    assert empty.shape == (len(VALUE_FEATURE_NAMES),) and empty.dtype == np.float32
    assert not empty.any()


def test_activity_after_as_of_counts_as_none():
    f = value_features(np.array([60]), np.array([5.0], np.float32), as_of_day=50)
    assert not f.any()


def test_single_day_user_has_no_repeat_statistics():
    f = feature_dict(value_features(np.array([40]), np.array([8.0], np.float32), as_of_day=54))
    assert f["has_activity"] == 1.0
    assert f["log_frequency"] == f["log_monetary"] == f["log_gap_mean_weeks"] == 0.0
    assert f["log_t_weeks"] == pytest.approx(np.log1p(2.0))
    assert f["log_weeks_since_last"] == pytest.approx(np.log1p(2.0))


def test_batch_rows_equal_single_user_calls():
    rng = np.random.default_rng(0)
    activities = []
    for size in (0, 1, 5, 12, 0, 3):
        days = np.sort(rng.choice(300, size=size, replace=False)).astype(np.int64)
        activities.append((days, rng.gamma(2.0, 15.0, size).astype(np.float32)))
    batch = value_features_batch(activities, as_of_day=250)
    assert batch.shape == (len(activities), N_VALUE_FEATURES) and batch.dtype == np.float32
    for row, (days, values) in zip(batch, activities, strict=True):
        np.testing.assert_array_equal(row, value_features(days, values, 250))
    assert np.isfinite(batch).all()


def test_one_user_in_plain_python_equals_the_vectorised_form():
    """value_features_one (a request's single user) against value_features_flat on the same
    activity: days before, on and after as_of, one day, long gaps, zero and negative values,
    up to the batch form's switch-over length."""
    rng = np.random.default_rng(7)
    cases = [(np.zeros(0, np.int64), np.zeros(0, np.float32), 100)]
    cases.append((np.array([100]), np.array([0.0], np.float32), 100))
    cases.append((np.array([10, 11, 400]), np.array([-3.0, 5.0, 2.0], np.float32), 200))
    for size in range(1, SCALAR_MAX_DAYS + 1, 3):
        days = np.sort(rng.choice(2000, size=size, replace=False)).astype(np.int64)
        values = rng.normal(20.0, 25.0, size).astype(np.float32)
        cases.append((days, values, int(rng.integers(0, 2200))))
    for days, values, as_of in cases:
        vectorised = value_features_flat(np.zeros(days.size, np.int64), days, values, 1, as_of)[0]
        one = value_features_one(days, values, as_of)
        assert one.dtype == np.float32 and one.shape == (N_VALUE_FEATURES,)
        np.testing.assert_allclose(one, vectorised, rtol=1e-6, atol=1e-7)
    long_days = np.arange(SCALAR_MAX_DAYS + 1, dtype=np.int64) * 3
    long_values = np.ones(long_days.size, np.float32)
    np.testing.assert_allclose(
        value_features(long_days, long_values, 500),
        value_features_one(long_days, long_values, 500),
        rtol=1e-6,
    )
