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


def test_bulk_recording_equals_recording_each_value_alone():
    import numpy as np
    from hdrh.histogram import HdrHistogram

    from loadtest.recorder import MAX_LATENCY_US, new_histogram

    rng = np.random.default_rng(7)
    # every bucket range: sub-ms, around 2048 us (the first bucket edge), seconds, over the cap
    seconds = np.concatenate(
        [
            rng.uniform(0, 0.003, 5000),
            np.array([2047, 2048, 2049, 4095, 4096, 4097], dtype=np.float64) / 1e6,
            rng.lognormal(-5, 2, 5000),
            [0.0, 1e-9, 200.0],
        ]
    )
    rec = Recorder(window_s=0.5)
    rec.FLUSH_EVERY = 1000  # several flushes, and a partial one at the end
    alone = {"latency": new_histogram(), "w": {}}
    for i, s in enumerate(seconds.tolist()):
        due = i / 4000
        rec.record(due, s, "OK", "recommend" if i % 3 else "predict", 0.0)
        us = min(max(int(s * 1e6), 1), MAX_LATENCY_US)
        alone["latency"].record_value(us)
        alone["w"].setdefault(int(due // 0.5), new_histogram(2)).record_value(us)

    def recorded(hist: HdrHistogram) -> list[tuple[int, int]]:
        return [
            (x.value_iterated_to, x.count_at_value_iterated_to)
            for x in hist.get_recorded_iterator()
        ]

    assert recorded(rec.latency) == recorded(alone["latency"])
    assert summary_ms(rec.latency) == summary_ms(alone["latency"])
    assert sorted(rec.windows) == sorted(alone["w"])
    for w, hist in alone["w"].items():
        assert recorded(rec.windows[w]) == recorded(hist)
    assert rec.count == seconds.size
    assert rec.clamped == 1  # the 200 s one
    assert sum(rec.by_kind[k].get_total_count() for k in rec.by_kind) == seconds.size
    assert rec.status == {"recommend/OK": seconds.size - (seconds.size + 2) // 3,
                          "predict/OK": (seconds.size + 2) // 3}  # fmt: skip
