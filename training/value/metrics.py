"""Holdout metrics for user-value predictions: pure functions of (actual, predicted) arrays,
plus the trivial rate-extrapolation baseline. Inputs are float[U] aligned per customer."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.contract.value_features import VALUE_FEATURE_NAMES
from training.evaluate.metrics import auc, average_ranks, mae, rmse


@dataclass(frozen=True)
class ValuePredictions:
    """Per-customer predictions for one horizon: float[U] each."""

    transactions: np.ndarray
    spend: np.ndarray
    p_active: np.ndarray


def spearman(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Rank correlation with average ranks for ties."""
    return float(np.corrcoef(average_ranks(actual), average_ranks(predicted))[0, 1])


def top_decile_capture(actual: np.ndarray, predicted: np.ndarray) -> float:
    """Share of the actual total made by the 10% of customers ranked highest by `predicted`."""
    actual = np.asarray(actual, np.float64)
    k = max(1, round(0.1 * actual.size))
    top = np.argsort(-np.asarray(predicted, np.float64), kind="stable")[:k]
    total = actual.sum()
    return float(actual[top].sum() / total) if total > 0 else float("nan")


def total_error(actual: np.ndarray, predicted: np.ndarray) -> float:
    """(predicted total - actual total) / actual total; -0.15 = 15% below."""
    total = float(np.sum(actual, dtype=np.float64))
    return float(np.sum(predicted, dtype=np.float64) / total - 1.0) if total > 0 else float("nan")


def evaluate(
    actual_transactions: np.ndarray, actual_spend: np.ndarray, predictions: ValuePredictions
) -> dict[str, float]:
    """The issue-4 table for one model: per target MAE/RMSE/Spearman/total/top-decile, and AUC."""
    out: dict[str, float] = {}
    for name, actual, pred in (
        ("transactions", actual_transactions, predictions.transactions),
        ("spend", actual_spend, predictions.spend),
    ):
        out[f"{name}_mae"] = mae(actual, pred)
        out[f"{name}_rmse"] = rmse(actual, pred)
        out[f"{name}_spearman"] = spearman(actual, pred)
        out[f"{name}_total_actual"] = float(np.sum(actual, dtype=np.float64))
        out[f"{name}_total_predicted"] = float(np.sum(pred, dtype=np.float64))
        out[f"{name}_total_error"] = total_error(actual, pred)
        out[f"{name}_top_decile_capture"] = top_decile_capture(actual, pred)
    out["p_active_auc"] = auc(actual_transactions > 0, predictions.p_active)
    return out


def rate_extrapolation(features: np.ndarray, horizon_weeks: float) -> ValuePredictions:
    """Trivial baseline from the same feature rows: repeat rate so far (frequency / T, T at
    least one week) times the horizon; spend = that times the mean value per active day."""
    col = {name: i for i, name in enumerate(VALUE_FEATURE_NAMES)}
    frequency = np.expm1(features[:, col["log_frequency"]].astype(np.float64))
    t_weeks = np.maximum(np.expm1(features[:, col["log_t_weeks"]].astype(np.float64)), 1.0)
    mean_value = np.expm1(features[:, col["log_mean_value"]].astype(np.float64))
    transactions = frequency / t_weeks * horizon_weeks
    return ValuePredictions(transactions, transactions * mean_value, 1.0 - np.exp(-transactions))
