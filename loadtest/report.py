"""Write a run's results: result.json, summary.md, and PNG plots (latency percentiles over time,
the latency distribution as a percentile spectrum, and p99 against rate for a step schedule)."""

from __future__ import annotations

import json
from pathlib import Path

from loadtest.recorder import Recorder


def fmt(value) -> str:
    if value is None:
        return "–"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def latency_row(name: str, s: dict) -> str:
    lat = s["latency_ms"]
    cells = [
        name,
        s.get("offered_rps"),
        s["achieved_rps"],
        lat.get("p50"),
        lat.get("p90"),
        lat.get("p99"),
        lat.get("p99.9"),
        lat.get("max"),
        s["errors"],
        s["requests"],
    ]
    return "| " + " | ".join(fmt(c) for c in cells) + " |"


HEADER = (
    "| run | offered/s | answered/s | p50 ms | p90 ms | p99 ms | p99.9 ms | max ms | errors "
    "| requests |\n|---|---|---|---|---|---|---|---|---|---|"
)


def markdown_run(title: str, summary: dict, command: str = "") -> str:
    lines = [f"## {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines += [HEADER, latency_row(title, summary), ""]
    lines += ["| kind | count | p50 ms | p99 ms | max ms |", "|---|---|---|---|---|"]
    for kind, s in summary["by_kind"].items():
        lines.append(
            f"| {kind} | {s['count']} | {fmt(s.get('p50'))} | {fmt(s.get('p99'))} "
            f"| {fmt(s.get('max'))} |"
        )
    lines += ["", "Status counts: " + ", ".join(f"{k} {v}" for k, v in summary["status"].items())]
    lag = summary["generator_lag_ms"]
    if lag.get("count"):
        lines.append(
            f"Generator lag (send time - due time): p99 {lag['p99']:.2f} ms, "
            f"max {lag['max']:.2f} ms"
        )
    return "\n".join(lines) + "\n"


def markdown_steps(title: str, steps: dict, command: str = "") -> str:
    lines = [f"## {title}", ""]
    if command:
        lines += [f"Command: `{command}`", ""]
    lines.append(
        f"Highest rate meeting p99 <= {steps['slo_p99_ms']:g} ms: "
        f"**{fmt(steps['max_rate'])} req/s**"
    )
    lines += [
        "",
        HEADER.replace("| run |", "| step |"),
        *(
            latency_row(
                f"{s['rate']:g}/s {'pass' if s['meets_slo'] else 'FAIL: ' + s['verdict']}", s
            )
            for s in steps["steps"]
        ),
    ]
    return "\n".join(lines) + "\n"


def plot_run(summary: dict, recorder: Recorder | None, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_d) = plt.subplots(1, 2, figsize=(12, 4.2))
    tl = summary["timeline"]
    t = [w["t_s"] for w in tl]
    for key in ("p50", "p90", "p99", "max"):
        ax_t.plot(t, [w.get(key, float("nan")) for w in tl], label=key, marker=".")
    ax_t.set(
        xlabel="time after warm-up (s)",
        ylabel="latency (ms)",
        yscale="log",
        title="latency percentiles per window",
    )
    ax_t.legend()
    ax_t.grid(alpha=0.3)
    if recorder is not None and recorder.count:
        xs, ys = [], []
        for item in recorder.latency.get_percentile_iterator(5):
            p = min(item.percentile_level_iterated_to, 99.9999)
            xs.append(1.0 / (1.0 - p / 100.0))
            ys.append(item.value_iterated_to / 1000.0)
        ax_d.plot(xs, ys)
        ax_d.set_xscale("log")
        ticks = [t for t in (1, 2, 10, 100, 1000, 10000, 100000) if t <= max(xs) * 1.01]
        labels = ["0%", "50%", "90%", "99%", "99.9%", "99.99%", "99.999%"][: len(ticks)]
        ax_d.set_xticks(ticks, labels)
        ax_d.set_xlim(1, max(xs))
    ax_d.set(xlabel="percentile", ylabel="latency (ms)", title="latency distribution")
    ax_d.grid(alpha=0.3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def plot_steps(steps: dict, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    rows = sorted(steps["steps"], key=lambda s: s["rate"])
    for key in ("p50", "p99"):
        ax.plot(
            [s["rate"] for s in rows],
            [s["latency_ms"].get(key) for s in rows],
            marker="o",
            label=key,
        )
    ax.axhline(steps["slo_p99_ms"], color="red", linestyle="--", label="p99 SLO")
    ax.set(xlabel="offered rate (req/s)", ylabel="latency (ms)", yscale="log", title=title)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def write_json(data: dict, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    return path


def spec_json(spec) -> dict:
    from dataclasses import asdict

    return asdict(spec)
