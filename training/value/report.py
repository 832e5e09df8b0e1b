"""The issue-4 report: every model x every metric (markdown), three PNG charts, per-customer TSV.

Charts (matplotlib, Agg):
    value_cumulative.png   cumulative repeat transactions by week, actual vs each model
    value_deciles.png      decile lift: actual holdout spend per decile of predicted spend
    value_calibration.png  P(active): observed share active per decile of predicted P(active)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from training.value.build import Holdout
from training.value.protocol import DAYS_PER_WEEK, CustomerDays, ValueProtocol

MODEL_LABELS: dict[str, str] = {
    "model": "value net (ours)",
    "bg_nbd": "BG/NBD + Gamma-Gamma",
    "pareto_nbd": "Pareto/NBD + Gamma-Gamma",
    "rate_baseline": "rate extrapolation",
}
ROWS: tuple[tuple[str, str, str], ...] = (
    ("transactions_mae", "transactions MAE", ".3f"),
    ("transactions_rmse", "transactions RMSE", ".3f"),
    ("transactions_spearman", "transactions Spearman", ".3f"),
    ("transactions_total_predicted", "transactions total (predicted)", ",.0f"),
    ("transactions_total_error", "transactions total error", "+.1%"),
    ("spend_mae", "spend MAE", ".2f"),
    ("spend_rmse", "spend RMSE", ".2f"),
    ("spend_spearman", "spend Spearman", ".3f"),
    ("spend_total_predicted", "spend total (predicted)", ",.0f"),
    ("spend_total_error", "spend total error", "+.1%"),
    ("spend_top_decile_capture", "spend top-decile capture", ".3f"),
    ("p_active_auc", "P(active) AUC", ".3f"),
)
TARGETS: dict[str, str] = {
    "spend_spearman": ">= 0.48",
    "spend_total_error": "within ±5%",
    "spend_top_decile_capture": ">= 0.55",
    "p_active_auc": ">= 0.79",
    "transactions_mae": "< both classical",
    "spend_mae": "< both classical",
}


def metrics_table(metrics: dict[str, Any]) -> str:
    names = [m for m in MODEL_LABELS if m in metrics]
    head = "| metric | " + " | ".join(MODEL_LABELS[m] for m in names) + " | target |"
    lines = [head, "|---" * (len(names) + 2) + "|"]
    n, s = metrics["model"]["transactions_total_actual"], metrics["model"]["spend_total_actual"]
    lines.append(f"| transactions total (actual) | {n:,.0f} |" + " |" * len(names))
    lines.append(f"| spend total (actual) | {s:,.0f} |" + " |" * len(names))
    for key, label, fmt in ROWS:
        cells = " | ".join(format(metrics[m][key], fmt) for m in names)
        lines.append(f"| {label} | {cells} | {TARGETS.get(key, '')} |")
    return "\n".join(lines)


def write_tsv(holdout: Holdout, path: Path, model: str = "model") -> None:
    """customer_id pred_transactions pred_spend p_active (tab separated, one header line)."""
    pred = holdout.predictions[model]
    with open(path, "w") as fh:
        fh.write("customer_id\tpred_transactions\tpred_spend\tp_active\n")
        for row in zip(holdout.user_ids, pred.transactions, pred.spend, pred.p_active, strict=True):
            fh.write(f"{row[0]}\t{row[1]:.6f}\t{row[2]:.4f}\t{row[3]:.6f}\n")


def weekly_repeats(data: CustomerDays, protocol: ValueProtocol) -> tuple[np.ndarray, np.ndarray]:
    """(week index from the calibration start, cumulative repeat transactions) through the
    end of the holdout; the first active day of each customer is not a repeat."""
    is_first = np.r_[True, data.owner[1:] != data.owner[:-1]]
    end = protocol.holdout_end_day
    keep = ~is_first & (data.days <= end) & (data.days >= protocol.calibration_start_day)
    week = (data.days[keep] - protocol.calibration_start_day) // DAYS_PER_WEEK
    n_weeks = int((end - protocol.calibration_start_day) // DAYS_PER_WEEK) + 1
    return np.arange(1, n_weeks + 1), np.cumsum(np.bincount(week, minlength=n_weeks)[:n_weeks])


def plot_all(
    holdout: Holdout, data: CustomerDays, protocol: ValueProtocol, out_dir: Path
) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    weeks, cumulative = weekly_repeats(data, protocol)
    cal_weeks = round(protocol.calibration_weeks)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(weeks, cumulative, color="black", lw=2, label="actual")
    base = cumulative[cal_weeks - 1] if cal_weeks <= cumulative.size else cumulative[-1]
    for name, curve in holdout.curves.items():
        ax.plot(cal_weeks + np.arange(1, curve.size + 1), base + curve, label=MODEL_LABELS[name])
    ax.axvline(cal_weeks, color="grey", ls="--", lw=1)
    ax.set(xlabel="week", ylabel="cumulative repeat transactions", title="Tracking plot")
    ax.legend()
    paths.append(_save(fig, out_dir / "value_cumulative.png"))

    fig, ax = plt.subplots(figsize=(8, 4.5))
    width = 0.8 / len(holdout.predictions)
    for k, (name, pred) in enumerate(holdout.predictions.items()):
        order = np.argsort(-pred.spend, kind="stable")
        share = [holdout.spend[b].sum() / holdout.spend.sum() for b in np.array_split(order, 10)]
        ax.bar(np.arange(1, 11) + (k - 1.5) * width, share, width, label=MODEL_LABELS[name])
    ax.set(xlabel="decile of predicted spend (1 = highest)", ylabel="share of holdout spend")
    ax.set_xticks(range(1, 11))
    ax.legend()
    paths.append(_save(fig, out_dir / "value_deciles.png"))

    fig, ax = plt.subplots(figsize=(5.5, 5.5))
    active = holdout.transactions > 0
    for name, pred in holdout.predictions.items():
        bins = np.array_split(np.argsort(pred.p_active, kind="stable"), 10)
        ax.plot(
            [pred.p_active[b].mean() for b in bins],
            [active[b].mean() for b in bins],
            marker="o",
            label=MODEL_LABELS[name],
        )
    ax.plot([0, 1], [0, 1], color="grey", ls="--", lw=1)
    ax.set(xlabel="predicted P(active)", ylabel="observed share active", title="Calibration")
    ax.legend()
    paths.append(_save(fig, out_dir / "value_calibration.png"))
    return paths


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path


def decile_calibration_table(holdout: Holdout) -> str:
    """Markdown: per model, mean predicted / mean actual holdout transactions in each decile of
    predicted transactions (1 = lowest). Shows where a total error comes from."""
    head = "| model | " + " | ".join(f"d{k}" for k in range(1, 11)) + " |"
    lines = [head, "|---" * 11 + "|"]
    for name, pred in holdout.predictions.items():
        bins = np.array_split(np.argsort(pred.transactions, kind="stable"), 10)
        cells = " | ".join(
            f"{pred.transactions[b].mean():.2f} / {holdout.transactions[b].mean():.2f}"
            for b in bins
        )
        lines.append(f"| {MODEL_LABELS[name]} | {cells} |")
    return "\n".join(lines)
