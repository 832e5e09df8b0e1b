"""Latency recording: HdrHistograms in microseconds, a warm-up that is not counted, counts by
gRPC status, per-window histograms for "percentiles over time", and the generator's own lag
(how late requests left compared with their due time: large lag = the generator, not the
server, was the bottleneck).

A Recorder serialises to a dict of base64 histograms so worker processes can be merged.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from hdrh.histogram import HdrHistogram

MAX_LATENCY_US = 120_000_000  # two minutes; longer latencies are clamped (and counted)
PERCENTILES = (50.0, 90.0, 99.0, 99.9)


def new_histogram(significant_figures: int = 3) -> HdrHistogram:
    return HdrHistogram(1, MAX_LATENCY_US, significant_figures)


def _us(seconds: float) -> int:
    return min(max(int(seconds * 1e6), 1), MAX_LATENCY_US)


@dataclass
class Recorder:
    """record(due_s, latency_s, ...) with due_s = the request's due time from the run start."""

    warmup_s: float = 0.0
    window_s: float = 1.0
    latency: HdrHistogram = field(default_factory=new_histogram)
    lag: HdrHistogram = field(default_factory=new_histogram)
    by_kind: dict[str, HdrHistogram] = field(default_factory=dict)
    windows: dict[int, HdrHistogram] = field(default_factory=dict)
    status: Counter = field(default_factory=Counter)  # "kind/STATUS" -> count (measured only)
    warmup_count: int = 0
    clamped: int = 0

    def record(self, due_s: float, latency_s: float, status: str, kind: str, lag_s: float) -> None:
        if due_s < self.warmup_s:
            self.warmup_count += 1
            return
        us = _us(latency_s)
        if latency_s * 1e6 > MAX_LATENCY_US:
            self.clamped += 1
        self.latency.record_value(us)
        self.lag.record_value(_us(max(lag_s, 0.0)))
        hist = self.by_kind.get(kind)
        if hist is None:
            hist = self.by_kind[kind] = new_histogram()
        hist.record_value(us)
        window = int((due_s - self.warmup_s) // self.window_s)
        whist = self.windows.get(window)
        if whist is None:
            whist = self.windows[window] = new_histogram(2)
        whist.record_value(us)
        self.status[f"{kind}/{status}"] += 1

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
        self.clamped += other.clamped


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
