"""A/B report: join exposures with feedback events, per-arm metrics with confidence intervals.

    exposures (gateway, JSON lines)  ─┐
                                      ├─► attribution ─► per-user table ─► per-arm metrics + SRM
    feedback events (user, item, ...) ┘

Attribution: a feedback event counts for an exposure when the same user acts on one of the
exposed items within `window_s` after the exposure (first matching exposure wins, so an event is
never counted twice). Metrics, with the user as the unit of analysis (users, not requests, are
randomised, so requests of one user are correlated):
- CTR = attributed clicks (click, purchase or rating events) / impressions, its standard error by
  the delta method over per-user sums (a ratio of means);
- conversion = share of users with at least one attributed purchase (Wilson interval);
- value per user = attributed purchase value / users (normal interval).
Each arm is compared with the control (the experiment's first arm): difference, 95% interval and
a two-sided p-value (Welch / delta method). Sample-ratio mismatch: a chi-square test of the users
per group against the configured shares; p < 0.001 flags the experiment as unreliable.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from scipy import stats

from services.gateway.experiments import Exposure

CLICK_KINDS = frozenset({"click", "purchase", "rating"})
SRM_ALPHA = 1e-3
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Feedback:
    user_id: str
    item_id: str
    kind: str
    timestamp: float
    value: float = 0.0


@dataclass(frozen=True)
class UserTotals:
    impressions: int
    clicks: int
    purchases: int
    value: float


@dataclass(frozen=True)
class Interval:
    estimate: float
    low: float
    high: float


@dataclass(frozen=True)
class ArmReport:
    arm: str
    users: int
    impressions: int
    ctr: Interval
    conversion: Interval
    value_per_user: Interval


@dataclass(frozen=True)
class Comparison:
    arm: str
    metric: str
    difference: Interval
    p_value: float


@dataclass(frozen=True)
class ExperimentReport:
    experiment: str
    control: str
    arms: list[ArmReport]
    comparisons: list[Comparison]
    srm_p_value: float
    srm: bool


def read_exposures(path: Path) -> list[Exposure]:
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                r = json.loads(line)
                out.append(
                    Exposure(
                        r["experiment"],
                        r["arm"],
                        r["user_id"],
                        tuple(r["items"]),
                        r.get("request_id", ""),
                        float(r.get("time", 0.0)),
                    )
                )
    return out


def read_feedback_tsv(path: Path) -> list[Feedback]:
    """TSV `user item kind value timestamp` (a header line is skipped)."""
    out = []
    with path.open(encoding="utf-8") as f:
        for line in f:
            parts = line.rstrip("\n").split("\t")
            if len(parts) != 5 or parts[0] == "user":
                continue
            out.append(Feedback(parts[0], parts[1], parts[2], float(parts[4]), float(parts[3])))
    return out


def attribute(
    exposures: Sequence[Exposure], feedback: Iterable[Feedback], window_s: float
) -> dict[tuple[str, str], dict[str, UserTotals]]:
    """{(experiment, arm): {user: totals}} over every exposed user (zeros included)."""
    by_user: dict[tuple[str, str], list[Exposure]] = {}
    for e in sorted(exposures, key=lambda e: e.time):
        by_user.setdefault((e.experiment, e.user_id), []).append(e)
    experiments = sorted({e.experiment for e in exposures})
    counts: dict[tuple[str, str, str], list[float]] = {}
    for (experiment, user), shown in by_user.items():
        for e in shown:
            row = counts.setdefault((experiment, e.arm, user), [0, 0, 0, 0.0])
            row[0] += len(e.items)
    for fb in feedback:
        for experiment in experiments:
            for e in by_user.get((experiment, fb.user_id), ()):
                if e.time <= fb.timestamp <= e.time + window_s and fb.item_id in e.items:
                    row = counts[(experiment, e.arm, fb.user_id)]
                    if fb.kind in CLICK_KINDS:
                        row[1] += 1
                    if fb.kind == "purchase":
                        row[2] += 1
                        row[3] += fb.value
                    break
    out: dict[tuple[str, str], dict[str, UserTotals]] = {}
    for (experiment, arm, user), (imp, clicks, buys, value) in counts.items():
        totals = UserTotals(int(imp), int(clicks), int(buys), float(value))
        out.setdefault((experiment, arm), {})[user] = totals
    return out


def _ratio(num: np.ndarray, den: np.ndarray) -> tuple[float, float]:
    """Ratio of sums and its delta-method variance (users as clusters)."""
    n = num.size
    mean_den = den.mean()
    r = float(num.sum() / den.sum()) if den.sum() > 0 else 0.0
    if n < 2 or mean_den == 0:
        return r, 0.0
    resid = num - r * den
    return r, float(resid.var(ddof=1) / (n * mean_den**2))


def _mean(x: np.ndarray) -> tuple[float, float]:
    return float(x.mean()), (float(x.var(ddof=1) / x.size) if x.size > 1 else 0.0)


def _wilson(successes: int, n: int) -> Interval:
    if n == 0:
        return Interval(0.0, 0.0, 0.0)
    p = successes / n
    den = 1 + Z95**2 / n
    centre = (p + Z95**2 / (2 * n)) / den
    half = Z95 * math.sqrt(p * (1 - p) / n + Z95**2 / (4 * n * n)) / den
    return Interval(p, max(0.0, centre - half), min(1.0, centre + half))


def _normal(estimate: float, var: float) -> Interval:
    half = Z95 * math.sqrt(max(var, 0.0))
    return Interval(estimate, estimate - half, estimate + half)


def _arrays(users: Mapping[str, UserTotals]) -> dict[str, np.ndarray]:
    rows = list(users.values())
    return {
        "impressions": np.asarray([u.impressions for u in rows], np.float64),
        "clicks": np.asarray([u.clicks for u in rows], np.float64),
        "converted": np.asarray([u.purchases > 0 for u in rows], np.float64),
        "value": np.asarray([u.value for u in rows], np.float64),
    }


def _estimates(a: Mapping[str, np.ndarray]) -> dict[str, tuple[float, float]]:
    return {
        "ctr": _ratio(a["clicks"], a["impressions"]),
        "conversion": _mean(a["converted"]),
        "value_per_user": _mean(a["value"]),
    }


def experiment_report(
    experiment: str,
    groups: Mapping[str, Mapping[str, UserTotals]],
    expected_shares: Mapping[str, float],
    control: str,
) -> ExperimentReport:
    arms, comparisons = [], []
    base = _estimates(_arrays(groups.get(control, {}))) if groups.get(control) else None
    for arm in sorted(groups, key=lambda a: (a != control, a)):
        a = _arrays(groups[arm])
        est = _estimates(a)
        arms.append(
            ArmReport(
                arm=arm,
                users=len(groups[arm]),
                impressions=int(a["impressions"].sum()),
                ctr=_normal(*est["ctr"]),
                conversion=_wilson(int(a["converted"].sum()), len(groups[arm])),
                value_per_user=_normal(*est["value_per_user"]),
            )
        )
        if base is None or arm == control:
            continue
        for metric, (value, var) in est.items():
            b_value, b_var = base[metric]
            diff, se = value - b_value, math.sqrt(var + b_var)
            p = float(2 * stats.norm.sf(abs(diff) / se)) if se > 0 else 1.0
            comparisons.append(Comparison(arm, metric, _normal(diff, se**2), p))
    observed = np.asarray([len(groups.get(g, {})) for g in expected_shares], np.float64)
    shares = np.asarray(list(expected_shares.values()), np.float64)
    expected = shares / shares.sum() * observed.sum()
    srm_p = float(stats.chisquare(observed, expected).pvalue) if observed.sum() > 0 else 1.0
    return ExperimentReport(experiment, control, arms, comparisons, srm_p, srm_p < SRM_ALPHA)


def to_markdown(reports: Sequence[ExperimentReport], window_s: float) -> str:
    lines = ["# A/B report", "", f"Attribution window: {window_s:.0f} s after the exposure.", ""]
    for r in reports:
        lines += [f"## {r.experiment} (control: {r.control})", ""]
        srm = "**SAMPLE RATIO MISMATCH: do not trust**" if r.srm else "ok"
        lines += [f"Sample-ratio check: chi-square p = {r.srm_p_value:.4f} ({srm})", ""]
        lines += ["| arm | users | impressions | CTR [95% CI] | conversion | value/user |"]
        lines += ["|---|---:|---:|---|---|---|"]
        for a in r.arms:
            lines.append(
                f"| {a.arm} | {a.users} | {a.impressions} | {_fmt(a.ctr)} | "
                f"{_fmt(a.conversion)} | {_fmt(a.value_per_user, 2)} |"
            )
        lines += [
            "",
            "| arm vs control | metric | difference [95% CI] | p-value |",
            "|---|---|---|---:|",
        ]
        for c in r.comparisons:
            lines.append(f"| {c.arm} | {c.metric} | {_fmt(c.difference)} | {c.p_value:.4g} |")
        lines.append("")
    return "\n".join(lines)


def _fmt(i: Interval, digits: int = 4) -> str:
    return f"{i.estimate:.{digits}f} [{i.low:.{digits}f}, {i.high:.{digits}f}]"


def to_json(reports: Sequence[ExperimentReport]) -> str:
    return json.dumps([asdict(r) for r in reports], indent=2)
