import numpy as np
import pytest

from loadtest.schedule import arrivals


def test_constant_schedule_is_evenly_spaced_from_its_phase():
    times = arrivals("constant", 100.0, 1.0, max_count=1000, phase_s=0.002)
    assert times.size == 100
    np.testing.assert_allclose(np.diff(times), 0.01)
    assert times[0] == pytest.approx(0.002)


def test_constant_workers_with_phases_interleave_into_the_full_rate():
    rate, workers = 300.0, 3
    union = np.sort(
        np.concatenate(
            [
                arrivals("constant", rate / workers, 1.0, max_count=10_000, phase_s=i / rate)
                for i in range(workers)
            ]
        )
    )
    np.testing.assert_allclose(np.diff(union), 1 / rate, atol=1e-9)


def test_poisson_schedule_has_the_requested_mean_rate_and_is_seeded():
    times = arrivals("poisson", 1000.0, 20.0, max_count=10**6, seed=7)
    assert times.size == pytest.approx(20_000, rel=0.03)
    gaps = np.diff(times)
    assert gaps.std() == pytest.approx(gaps.mean(), rel=0.05)  # exponential: std == mean
    np.testing.assert_array_equal(times, arrivals("poisson", 1000.0, 20.0, max_count=10**6, seed=7))
    assert (times >= 0).all() and (times < 20.0).all() and (np.diff(times) >= 0).all()


def test_schedules_are_bounded_by_count_and_duration():
    assert arrivals("constant", 1e6, 100.0, max_count=50).size == 50
    assert arrivals("poisson", 1e6, 100.0, max_count=50).size == 50
    assert arrivals("constant", 10.0, 0.5, max_count=1000).size == 5


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule"):
        arrivals("bursty", 10.0, 1.0, max_count=10)
