"""Latency recording: HdrHistograms in microseconds, a warm-up that is not counted, counts by
gRPC status, per-window histograms for "percentiles over time", and the generator's own lag
(how late requests left compared with their due time: large lag = the generator, not the
server, was the bottleneck).

A Recorder serialises to a dict of base64 histograms so worker processes can be merged.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
from hdrh.histogram import HdrHistogram

MAX_LATENCY_US = 120_000_000  # two minutes; longer latencies are clamped (and counted)
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram(significant_figures: int = 3) -> HdrHistogram:
    return HdrHistogram(1, MAX_LATENCY_US, significant_figures)


def _us_array(seconds: np.ndarray) -> np.ndarray:
    """Seconds -> whole microseconds in [1, MAX_LATENCY_US] (int64)."""
    return np.clip(np.trunc(seconds * 1e6), 1, MAX_LATENCY_US).astype(np.int64)


def _record_groups(hists: dict, keys: np.ndarray, us: np.ndarray, digits: int) -> None:
    """us[i] into hists[keys[i]] (a new histogram of `digits` significant digits per new key)."""
    for key in np.unique(keys).tolist():
        hist = hists.get(key)
        if hist is None:
            hist = hists[key] = new_histogram(digits)
        _record_many(hist, us[keys == key])


def _record_many(hist: HdrHistogram, us: np.ndarray) -> None:
    """Record every value of `us`: each distinct bucket once, with its count. A value is first
    rounded down to the lowest value its bucket holds (hdrh's lowest equivalent value), so the
    counts, min, max, mean and percentiles are those of recording the values one by one."""
    if us.size == 0:
        return
    # the bucket of v: (bit length of v) - (bits of a sub-bucket), at least 0 (unit magnitude 0)
    bits = np.floor(np.log2(us.astype(np.float64))).astype(np.int64) + 1
    shift = np.maximum(bits - hist.sub_bucket_half_count_magnitude - 1, 0)
    lowest = (us >> shift) << shift
    values, counts = np.unique(lowest, return_counts=True)
    for value, count in zip(values.tolist(), counts.tolist(), strict=True):
        hist.record_value(value, count)


class _Flushed:
    """A Recorder attribute (its `_<name>`) read once the pending records are in it."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.private = f"_{name}"

    def __get__(self, recorder: Recorder | None, owner: type | None = None):
        if recorder is None:
            return self
        recorder._flush()
        return getattr(recorder, self.private)


class Recorder:
    """record(due_s, latency_s, ...) with due_s = the request's due time from the run start.

    A record is one tuple appended to a list; the histograms take them in bulk
    (FLUSH_EVERY at a time, and before anything reads them): each distinct value once, with its
    count, after rounding it down to its histogram bucket's lowest value. The histograms hold
    the same counts as recording each value alone, at a fraction of the load generator's CPU
    per request (hdrh's record_value is Python)."""

    FLUSH_EVERY = 16_384
    latency = _Flushed()
    lag = _Flushed()
    by_kind = _Flushed()  # kind -> HdrHistogram
    windows = _Flushed()  # window index -> HdrHistogram (2 significant digits)
    status = _Flushed()  # "kind/STATUS" -> count (measured requests only)
    clamped = _Flushed()  # latencies over MAX_LATENCY_US, recorded as MAX_LATENCY_US

    def __init__(
        self,
        warmup_s: float = 0.0,
        window_s: float = 1.0,
        latency: HdrHistogram | None = None,
        lag: HdrHistogram | None = None,
        by_kind: dict[str, HdrHistogram] | None = None,
        windows: dict[int, HdrHistogram] | None = None,
        status: Counter | None = None,
        warmup_count: int = 0,
        clamped: int = 0,
    ) -> None:
        self.warmup_s = warmup_s
        self.window_s = window_s
        self._latency = latency if latency is not None else new_histogram()
        self._lag = lag if lag is not None else new_histogram()
        self._by_kind: dict[str, HdrHistogram] = by_kind if by_kind is not None else {}
        self._windows: dict[int, HdrHistogram] = windows if windows is not None else {}
        self._status: Counter = status if status is not None else Counter()
        self.warmup_count = warmup_count
        self._clamped = clamped
        # (due_s, latency_s, status, kind, lag_s) not in the histograms yet
        self._pending: list[tuple[float, float, str, str, float]] = []

    def record(self, due_s: float, latency_s: float, status: str, kind: str, lag_s: float) -> None:
        if due_s < self.warmup_s:
            self.warmup_count += 1
            return
        pending = self._pending
        pending.append((due_s, latency_s, status, kind, lag_s))
        if len(pending) >= self.FLUSH_EVERY:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        due, latency, status, kind, lag = (np.asarray(c) for c in zip(*self._pending, strict=True))
        self._pending = []
        self._clamped += int(np.count_nonzero(latency * 1e6 > MAX_LATENCY_US))
        us = _us_array(latency)
        _record_many(self._latency, us)
        _record_many(self._lag, _us_array(np.maximum(lag, 0.0)))
        _record_groups(self._by_kind, kind, us, 3)
        window = ((due - self.warmup_s) // self.window_s).astype(np.int64)
        _record_groups(self._windows, window, us, 2)
        self._status.update(f"{k}/{s}" for k, s in zip(kind.tolist(), status.tolist(), strict=True))

    @property
    def count(self) -> int:
        return int(self.latency.get_total_count())

    def ok_count(self) -> int:
        return sum(n for key, n in self.status.items() if key.endswith("/OK"))

    # --- merging across worker processes --------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "warmup_s": self.warmup_s,
            "window_s": self.window_s,
            "latency": self.latency.encode().decode(),
            "lag": self.lag.encode().decode(),
            "by_kind": {k: h.encode().decode() for k, h in self.by_kind.items()},
            "windows": {str(w): h.encode().decode() for w, h in self.windows.items()},
            "status": dict(self.status),
            "warmup_count": self.warmup_count,
            "clamped": self.clamped,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Recorder:
        return cls(
            warmup_s=data["warmup_s"],
            window_s=data["window_s"],
            latency=HdrHistogram.decode(data["latency"].encode()),
            lag=HdrHistogram.decode(data["lag"].encode()),
            by_kind={k: HdrHistogram.decode(v.encode()) for k, v in data["by_kind"].items()},
            windows={int(w): HdrHistogram.decode(v.encode()) for w, v in data["windows"].items()},
            status=Counter(data["status"]),
            warmup_count=data["warmup_count"],
            clamped=data["clamped"],
        )

    def merge(self, other: Recorder) -> None:
        self.latency.add(other.latency)
        self.lag.add(other.lag)
        for kind, hist in other.by_kind.items():
            self.by_kind.setdefault(kind, new_histogram()).add(hist)
        for window, hist in other.windows.items():
            self.windows.setdefault(window, new_histogram(2)).add(hist)
        self.status.update(other.status)
        self.warmup_count += other.warmup_count
        self._clamped += other.clamped


def summary_ms(hist: HdrHistogram) -> dict[str, float]:
    """{"count", "p50", "p90", "p99", "p99.9", "max", "mean"}; latencies in milliseconds."""
    n = int(hist.get_total_count())
    if n == 0:
        return {"count": 0}
    out: dict[str, float] = {"count": n}
    for p in PERCENTILES:
        out[f"p{p:g}"] = hist.get_value_at_percentile(p) / 1000.0
    out["max"] = hist.get_max_value() / 1000.0
    out["mean"] = round(hist.get_mean_value() / 1000.0, 4)
    return out
