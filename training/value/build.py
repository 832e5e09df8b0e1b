"""build_value_model: an event log -> trained, evaluated, parity-checked user_value.onnx.

Pipeline: customer-days -> training windows inside the calibration period (protocol.py) ->
features (services.contract.value_features, the serving code) -> ValueNet -> holdout metrics for
the net and the rate-extrapolation baseline -> ONNX export + parity check -> manifest section.
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from services.contract.bundle import ENGAGEMENT_UNIT
from services.contract.value_features import VALUE_FEATURE_NAMES, value_features_flat
from training.data.schema import InteractionData
from training.value.classical import BgNbd, GammaGamma, ParetoNbd, rfm_at
from training.value.export import export_value_model, parity_max_abs_error
from training.value.metrics import ValuePredictions, evaluate, rate_extrapolation, spearman
from training.value.model import ValueEnsemble, ValueLoss, ValueNet
from training.value.protocol import (
    CustomerDays,
    ValueProtocol,
    active_by,
    customer_days,
    protocol_for,
    training_windows,
    window_labels,
)

ONNX_NAME = "user_value.onnx"
DEFAULT_EPOCHS = 10
BATCH_SIZE = 4096
LEARNING_RATE = 5e-3
VALIDATION_FRACTION = 0.1
DECAY_FORMS: tuple[str, ...] = ("power", "floor", "exponential")


@dataclass(frozen=True)
class NetConfig:
    """members: nets trained with seeds seed, seed + 1, ... whose outputs the graph averages.
    decay: how a customer's rate ages over the horizon (training.value.model.ValueNet):
    "power" (default), "floor" (power law plus a share that never ages) or "exponential"."""

    members: int = 3
    decay: str = "power"
    hidden: int = 64
    epochs: int = DEFAULT_EPOCHS

    def __post_init__(self) -> None:
        if self.decay not in DECAY_FORMS:
            raise ValueError(f"decay must be one of {DECAY_FORMS}, got {self.decay!r}")
        if self.members < 1 or self.epochs < 1:
            raise ValueError("members and epochs must be >= 1")


# Segment rules (services.uservalue.scorer): P(active) below these -> DORMANT / AT_RISK.
DORMANT_P_ACTIVE = 0.15
AT_RISK_P_ACTIVE = 0.35
HIGH_VALUE_QUANTILE = 0.9


@dataclass(frozen=True)
class Holdout:
    """Per-customer holdout truth and every model's predictions (for the report).

    curves: model -> float[horizon] expected cumulative repeat transactions over all customers
    after 1..horizon weeks of the holdout."""

    user_ids: np.ndarray
    transactions: np.ndarray
    spend: np.ndarray
    predictions: dict[str, ValuePredictions]
    curves: dict[str, np.ndarray]


@dataclass(frozen=True)
class ValueModelResult:
    onnx_path: Path
    metrics: dict[str, Any]
    manifest_section: dict[str, Any]
    holdout: Holdout | None = None


@dataclass(frozen=True)
class Examples:
    """Training rows: float32[N, F] features at a cut-off, horizon weeks, count, spend; plus the
    customer row each came from (for the customer-level validation split)."""

    features: np.ndarray
    horizon: np.ndarray
    count: np.ndarray
    spend: np.ndarray
    owner: np.ndarray


def features_at(data: CustomerDays, day: int) -> tuple[np.ndarray, np.ndarray]:
    """(owners active by `day`, float32[U_active, F] their features as of `day`)."""
    owners = np.flatnonzero(active_by(data, day))
    feats = value_features_flat(data.owner, data.days, data.values, data.n_users, day)
    return owners, feats[owners]


def training_examples(data: CustomerDays, protocol: ValueProtocol) -> Examples:
    parts: list[tuple[np.ndarray, ...]] = []
    cache: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for cut_off, horizon in training_windows(protocol):
        if cut_off not in cache:
            cache[cut_off] = features_at(data, cut_off)
        owners, feats = cache[cut_off]
        labels = window_labels(data, cut_off, horizon)
        parts.append(
            (
                feats,
                np.full(owners.size, horizon, np.float32),
                labels.transactions[owners],
                labels.spend[owners],
                owners,
            )
        )
    return Examples(*(np.concatenate(cols) for cols in zip(*parts, strict=True)))


def _tensors(ex: Examples, rows: np.ndarray) -> tuple[torch.Tensor, ...]:
    return tuple(
        torch.from_numpy(np.ascontiguousarray(a[rows]))
        for a in (ex.features, ex.horizon, ex.count, ex.spend)
    )


def train_net(
    ex: Examples, horizon_weeks: float, config: NetConfig, *, seed: int, progress: bool
) -> tuple[ValueNet, dict[str, Any]]:
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    customers = np.unique(ex.owner)
    held = rng.choice(customers, size=int(VALIDATION_FRACTION * customers.size), replace=False)
    is_val = np.isin(ex.owner, held)
    train_rows, val_rows = np.flatnonzero(~is_val), np.flatnonzero(is_val)
    x, h, n, s = _tensors(ex, train_rows)
    val = _tensors(ex, val_rows)
    net = ValueNet(
        x.mean(0),
        x.std(0),
        rate_scale=float((n / h).mean()),
        spend_scale=float(s.sum() / n.sum().clamp_min(1.0)),
        horizon_weeks=horizon_weeks,
        age_column=VALUE_FEATURE_NAMES.index("log_t_weeks"),
        hidden=config.hidden,
        floor=config.decay == "floor",
        exponential=config.decay == "exponential",
    )
    loss_fn = ValueLoss()
    opt = torch.optim.Adam(net.parameters(), lr=LEARNING_RATE, weight_decay=1e-5)
    epochs = config.epochs
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    best_val, best_state, history = float("inf"), None, []
    start = time.perf_counter()
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x))
        total = 0.0
        for lo in range(0, len(x), BATCH_SIZE):
            idx = order[lo : lo + BATCH_SIZE]
            loss = loss_fn(net, x[idx], h[idx], n[idx], s[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        sched.step()
        net.eval()
        with torch.no_grad():
            val_loss = float(loss_fn(net, *val))
        history.append({"epoch": epoch + 1, "train_loss": total / len(x), "val_loss": val_loss})
        if val_loss < best_val:
            best_val = val_loss
            best_state = {k: v.clone() for k, v in net.state_dict().items()}
        if progress:
            print(
                f"value epoch {epoch + 1}/{epochs} train {total / len(x):.4f} val {val_loss:.4f}",
                file=sys.stderr,
            )
    assert best_state is not None
    net.load_state_dict(best_state)
    info = {
        "epochs": epochs,
        "batch_size": BATCH_SIZE,
        "learning_rate": LEARNING_RATE,
        "n_train_examples": int(train_rows.size),
        "n_val_examples": int(val_rows.size),
        "seconds": round(time.perf_counter() - start, 2),
        "history": history,
    }
    return net.eval(), info


def train_ensemble(
    ex: Examples, horizon_weeks: float, config: NetConfig, *, seed: int, progress: bool
) -> tuple[ValueEnsemble, dict[str, Any]]:
    """config.members nets, each with its own seed (initialisation and validation customers)."""
    members, infos = [], []
    for k in range(config.members):
        net, info = train_net(ex, horizon_weeks, config, seed=seed + k, progress=progress)
        members.append(net)
        infos.append(info)
    info = {**infos[0], **asdict(config), "seconds": round(sum(i["seconds"] for i in infos), 2)}
    info["history"] = [i["history"] for i in infos]
    return ValueEnsemble(members).eval(), info


def predict(net: ValueNet | ValueEnsemble, features: np.ndarray) -> ValuePredictions:
    with torch.no_grad():
        p, t, v = (o.numpy().astype(np.float64) for o in net(torch.from_numpy(features)))
    return ValuePredictions(transactions=t, spend=v, p_active=p)


def net_curve(net: ValueEnsemble, features: np.ndarray, weeks: np.ndarray) -> np.ndarray:
    """Expected cumulative transactions summed over customers after each of `weeks`."""
    with torch.no_grad():
        return np.array(net.curve(torch.from_numpy(features), [float(w) for w in weeks]))


def classical_predictions(
    data: CustomerDays, protocol: ValueProtocol, weeks: np.ndarray
) -> tuple[dict[str, ValuePredictions], dict[str, np.ndarray], dict[str, Any]]:
    """BG/NBD and Pareto/NBD (+ Gamma-Gamma) fitted on the calibration period only."""
    _, rfm = rfm_at(data, protocol.as_of_day)
    gg = GammaGamma.fit(rfm)
    per_txn = gg.expected_value(rfm)
    preds, curves, params = {}, {}, {"gamma_gamma": asdict(gg)}
    for name, cls in (("bg_nbd", BgNbd), ("pareto_nbd", ParetoNbd)):
        fitted = cls.fit(rfm)
        n = fitted.expected(rfm, protocol.horizon_weeks)
        preds[name] = ValuePredictions(n, n * per_txn, fitted.p_any(rfm, protocol.horizon_weeks))
        curves[name] = np.array([fitted.expected(rfm, float(w)).sum() for w in weeks])
        params[name] = asdict(fitted)
    return preds, curves, params


def build_value_model(
    cdnow: InteractionData,
    out_dir: Path,
    *,
    seed: int = 0,
    epochs: int | None = None,
    config: NetConfig | None = None,
    progress: bool = True,
    protocol: ValueProtocol | None = None,
) -> ValueModelResult:
    """Train on windows inside the calibration period, report holdout metrics (model and
    rate-extrapolation baseline), export out_dir/user_value.onnx with a parity check."""
    torch.set_num_threads(1)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    protocol = protocol or protocol_for(cdnow.events, cdnow.source)
    data = customer_days(cdnow.events)
    examples = training_examples(data, protocol)
    config = replace(config or NetConfig(), **({"epochs": epochs} if epochs else {}))
    net, train_info = train_ensemble(
        examples,
        protocol.horizon_weeks,
        config,
        seed=seed,
        progress=progress,
    )

    owners, eval_features = features_at(data, protocol.as_of_day)
    holdout = window_labels(data, protocol.as_of_day, protocol.horizon_weeks)
    actual_n, actual_s = holdout.transactions[owners], holdout.spend[owners]
    model_pred = predict(net, eval_features)
    baseline = rate_extrapolation(eval_features, protocol.horizon_weeks)
    weeks = np.arange(1, int(protocol.horizon_weeks) + 1)
    classical, curves, classical_params = classical_predictions(data, protocol, weeks)
    curves["model"] = net_curve(net, eval_features, weeks)
    curves["rate_baseline"] = baseline.transactions.sum() * weeks / protocol.horizon_weeks
    repeat = eval_features[:, VALUE_FEATURE_NAMES.index("log_frequency")] > 0

    onnx_path = out_dir / ONNX_NAME
    export_value_model(net, onnx_path, len(VALUE_FEATURE_NAMES))
    parity = parity_max_abs_error(net, onnx_path, eval_features)

    thresholds = {
        "dormant_p_active": DORMANT_P_ACTIVE,
        "at_risk_p_active": AT_RISK_P_ACTIVE,
        "high_value_expected_value": float(np.quantile(model_pred.spend, HIGH_VALUE_QUANTILE)),
        "high_value_quantile": HIGH_VALUE_QUANTILE,
    }
    metrics = {
        "protocol": protocol.describe(),
        "n_customers": int(owners.size),
        "holdout_active_share": float((actual_n > 0).mean()),
        "model": evaluate(actual_n, actual_s, model_pred),
        "rate_baseline": evaluate(actual_n, actual_s, baseline),
        **{name: evaluate(actual_n, actual_s, pred) for name, pred in classical.items()},
        "classical_parameters": classical_params,
        # The baseline ties every one-time buyer (60% of CDNOW) at 0, which Spearman rewards;
        # among repeat buyers no such tie exists, so this compares the rankings themselves.
        "spend_spearman_repeat_buyers": {
            "model": spearman(actual_s[repeat], model_pred.spend[repeat]),
            "rate_baseline": spearman(actual_s[repeat], baseline.spend[repeat]),
        },
        "training": train_info,
    }
    section = {
        "horizon_weeks": float(protocol.horizon_weeks),
        "as_of_day": int(protocol.as_of_day),
        # The shop's currency when its events carry money, else engagement (interactions).
        "unit": str(cdnow.config.currency) if cdnow.has_money else ENGAGEMENT_UNIT,
        "kind": "money" if cdnow.has_money else "engagement",
        "feature_names": list(VALUE_FEATURE_NAMES),
        "segment_thresholds": thresholds,
        "parity_max_abs_error": parity,
        "source": cdnow.source,
        "training_windows": [list(w) for w in training_windows(protocol)],
        "net": asdict(config),
    }
    holdout_data = Holdout(
        user_ids=data.user_ids[owners],
        transactions=actual_n.astype(np.float64),
        spend=actual_s.astype(np.float64),
        predictions={"model": model_pred, **classical, "rate_baseline": baseline},
        curves=curves,
    )
    return ValueModelResult(onnx_path, metrics, section, holdout_data)
