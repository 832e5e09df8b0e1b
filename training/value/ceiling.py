"""Diagnostic only: how well can the value features rank P(any purchase in the holdout) at all?

Fits a logistic regression on the *holdout* labels, in-sample (linear, and with squares), and
prints its AUC; and least squares of holdout spend (raw and log1p) with its spend Spearman and
top-decile capture: rough upper bounds for a smooth score of these features. Nothing here feeds
a model, a choice or a threshold; the shipped value net is trained on calibration-period windows
only (training.value.protocol).

    python -m training.value.ceiling [--data-dir data]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy import optimize

from training.data import load_cdnow
from training.evaluate.metrics import auc
from training.value.build import features_at
from training.value.metrics import spearman, top_decile_capture
from training.value.protocol import CDNOW_PROTOCOL, customer_days, window_labels


def in_sample_logistic_auc(design: np.ndarray, label: np.ndarray) -> float:
    """AUC of a maximum-likelihood logistic regression scored on its own training rows."""

    def nll(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = design @ w
        p = 0.5 * (1.0 + np.tanh(0.5 * z))
        return float(np.sum(np.logaddexp(0.0, z) - label * z)), design.T @ (p - label)

    w = optimize.minimize(nll, np.zeros(design.shape[1]), jac=True, method="L-BFGS-B").x
    return auc(label > 0, design @ w)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m training.value.ceiling")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    args = parser.parse_args(argv)
    data = customer_days(load_cdnow(args.data_dir / "cdnow").events)
    p = CDNOW_PROTOCOL
    owners, x = features_at(data, p.as_of_day)
    y = (window_labels(data, p.as_of_day, p.horizon_weeks).transactions[owners] > 0).astype(float)
    z = (x - x.mean(0)) / (x.std(0) + 1e-6)
    ones = np.ones((len(z), 1))
    print(
        f"linear    in-sample AUC on holdout labels {in_sample_logistic_auc(np.c_[ones, z], y):.4f}"
    )
    quad = np.c_[ones, z, z * z]
    print(f"quadratic in-sample AUC on holdout labels {in_sample_logistic_auc(quad, y):.4f}")
    spend = window_labels(data, p.as_of_day, p.horizon_weeks).spend[owners].astype(float)
    for name, target in (("spend", spend), ("log1p(spend)", np.log1p(spend))):
        fitted = quad @ np.linalg.lstsq(quad, target, rcond=None)[0]
        print(
            f"quadratic least squares on holdout {name}: in-sample spend Spearman "
            f"{spearman(spend, fitted):.4f}, "
            f"top-decile capture {top_decile_capture(spend, fitted):.4f}"
        )


if __name__ == "__main__":
    main()
