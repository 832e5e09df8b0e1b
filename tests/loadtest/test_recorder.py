import pytest

from loadtest.recorder import Recorder, summary_ms


def test_warmup_requests_are_not_counted():
    rec = Recorder(warmup_s=1.0)
    rec.record(0.5, 0.9, "OK", "recommend", 0.0)  # due in the warm-up: ignored
    rec.record(1.5, 0.002, "OK", "recommend", 0.0)
    assert rec.count == 1
    assert rec.warmup_count == 1
    assert summary_ms(rec.latency)["max"] == pytest.approx(2.0, rel=0.01)


def test_percentiles_counts_by_status_and_windows():
    rec = Recorder(window_s=1.0)
    for i in range(1000):
        rec.record(i / 500, (i + 1) / 1e6 * 1000, "OK", "recommend", 0.0)  # 1..1000 ms
    rec.record(1.0, 0.5, "DEADLINE_EXCEEDED", "feedback", 0.0)
    s = summary_ms(rec.latency)
    assert s["count"] == 1001
    assert s["p50"] == pytest.approx(500, rel=0.01)
    assert s["p99"] == pytest.approx(990, rel=0.01)
    assert s["max"] == pytest.approx(1000, rel=0.01)
    assert rec.status == {"recommend/OK": 1000, "feedback/DEADLINE_EXCEEDED": 1}
    assert rec.ok_count() == 1000
    assert sorted(rec.windows) == [0, 1]


def test_recorders_merge_through_their_serialised_form():
    a, b = Recorder(), Recorder()
    for _ in range(100):
        a.record(0.1, 0.001, "OK", "recommend", 0.0)
        b.record(0.1, 0.100, "UNAVAILABLE", "predict", 0.0)
    merged = Recorder.from_dict(a.to_dict())
    merged.merge(Recorder.from_dict(b.to_dict()))
    assert merged.count == 200
    assert merged.status == {"recommend/OK": 100, "predict/UNAVAILABLE": 100}
    assert summary_ms(merged.latency)["max"] == pytest.approx(100, rel=0.01)
    assert set(merged.by_kind) == {"recommend", "predict"}
