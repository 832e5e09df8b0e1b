"""The bundle's rating model, end to end: carve a validation set out of train, fit the
components on the rest (early stopping on validation), fit the blend weights and the logistic
P(rating >= 4) on validation, optionally refit the components on the whole train, assemble a
RatingBlend.

    blend, info = train_rating_model(catalog, train_ix, RatingTrainConfig())

Nothing here ever sees test events: callers pass training events only.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from training.encode import EncodedCatalog
from training.models.bpmf import BPMFConfig, fit_bpmf
from training.models.rating import MAX_RATING, MIN_RATING, FactorScorer, RatingBlend
from training.models.rating_fit import RatingConfig, RatingData, fit_autorec, fit_svdpp

COMPONENTS = ("bpmf", "autorec", "svdpp")


@dataclass(frozen=True)
class RatingTrainConfig:
    components: tuple[str, ...] = ("bpmf", "autorec")
    valid_fraction: float = 0.1
    bpmf: BPMFConfig = field(default_factory=BPMFConfig)
    nets: RatingConfig = field(default_factory=RatingConfig)
    # Refit the components on the whole train after validation (AutoRec for the validated
    # number of steps). Measured by `make eval` (5-fold RMSE): without 0.8883, with 0.8834, for
    # 15-24 s -> 30-46 s of rating-model training per fold on the shared 2-core box.
    refit: bool = True
    seed: int = 0
    # The dataset's rating scale and "like" threshold (dataset.toml [ratings]).
    scale: tuple[float, float] = (MIN_RATING, MAX_RATING)
    positive_threshold: float = 4.0

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def tiny(self) -> RatingTrainConfig:
        """A quick preset for tests: the same code paths, a few sweeps / steps."""
        return dataclasses.replace(
            self,
            bpmf=dataclasses.replace(self.bpmf, burn_in=2, samples=3),
            nets=dataclasses.replace(
                self.nets, autorec_hidden=32, autorec_max_steps=20, max_steps=20
            ),
        )


def _inputs(data: RatingData, served: RatingData) -> tuple[torch.Tensor, ...]:
    """Model inputs for data's (user, item) pairs with the users' served state from `served`."""
    users = torch.as_tensor(data.users.copy())
    return (
        users,
        torch.as_tensor(served.profiles[data.users]),
        torch.as_tensor(served.histories[data.users]),
        torch.as_tensor(data.items.copy()).unsqueeze(1),
    )


@torch.no_grad()
def predict(model: nn.Module, data: RatingData, served: RatingData) -> np.ndarray:
    model.eval()
    out = model(*_inputs(data, served))
    out = out[0] if isinstance(out, tuple) else out
    return out[:, 0].numpy().astype(np.float64)


def fit_blend(preds: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Least squares with intercept: preds [R, M] -> weights [M + 1] (intercept first)."""
    x = np.hstack([np.ones((len(preds), 1)), preds])
    return np.linalg.lstsq(x, truth, rcond=None)[0]


def fit_positive(rating: np.ndarray, liked: np.ndarray, steps: int = 200) -> tuple[float, float]:
    """Logistic P(liked) = sigmoid(a * rating + b) by Newton's method -> (a, b)."""
    x = np.stack([rating, np.ones_like(rating)], axis=1)
    w = np.array([1.0, -3.5])
    for _ in range(steps):
        p = 1.0 / (1.0 + np.exp(-x @ w))
        grad = x.T @ (p - liked)
        hess = x.T @ (x * (p * (1 - p))[:, None]) + 1e-9 * np.eye(2)
        delta = np.linalg.solve(hess, grad)
        w -= delta
        if np.abs(delta).max() < 1e-10:
            break
    return float(w[0]), float(w[1])


def _fit_components(
    catalog: EncodedCatalog,
    data: RatingData,
    cfg: RatingTrainConfig,
    valid: RatingData | None,
    steps: dict[str, int] | None,
) -> tuple[list[nn.Module], dict[str, dict[str, Any]]]:
    models: list[nn.Module] = []
    info: dict[str, dict[str, Any]] = {}
    for name in cfg.components:
        start = time.perf_counter()
        if name == "bpmf":
            res = fit_bpmf(data.users, data.items, data.ratings, data.n_users, data.n_items,
                           cfg.bpmf)  # fmt: skip
            model: nn.Module = FactorScorer(
                res.mu, res.user_factors, res.item_factors, res.user_bias, res.item_bias
            )
            info[name] = {"sweeps": cfg.bpmf.burn_in + cfg.bpmf.samples}
        elif name == "autorec":
            model, info[name] = fit_autorec(data, cfg.nets, valid, (steps or {}).get(name))
        elif name == "svdpp":
            model, info[name] = fit_svdpp(catalog, data, cfg.nets, valid, (steps or {}).get(name))
        else:
            raise ValueError(f"unknown rating component {name!r}; known: {COMPONENTS}")
        info[name]["seconds"] = round(time.perf_counter() - start, 2)
        models.append(model)
    return models, info


def train_rating_model(
    catalog: EncodedCatalog, train_ix: pd.DataFrame, cfg: RatingTrainConfig
) -> tuple[RatingBlend, dict[str, Any]]:
    """train_ix: indexed training events sorted by (user, time) (training.encode.index_events).
    -> (the served RatingBlend, what was fitted and measured)."""
    rated = train_ix[train_ix["rating"].notna()]
    hold = np.random.default_rng(cfg.seed + 100).random(len(rated)) < cfg.valid_fraction
    fit_ix = rated[~hold]
    fit_data = RatingData.build(catalog, fit_ix)
    valid = RatingData.build(catalog, rated[hold])
    models, fit_info = _fit_components(catalog, fit_data, cfg, valid, None)
    preds = np.stack([predict(m, valid, fit_data) for m in models], axis=1)
    weights = fit_blend(preds, valid.ratings.astype(np.float64))
    low, high = cfg.scale
    blended = np.clip(np.hstack([np.ones((len(preds), 1)), preds]) @ weights, low, high)
    liked = (valid.ratings >= cfg.positive_threshold).astype(np.float64)
    positive = fit_positive(blended, liked)
    info: dict[str, Any] = {
        "config": cfg.to_json(),
        "n_fit": len(fit_data.ratings),
        "n_valid": len(valid.ratings),
        "weights": weights.tolist(),
        "positive": list(positive),
        "fit": fit_info,
        "valid_rmse": {
            name: float(np.sqrt(np.mean((np.clip(preds[:, k], low, high) - valid.ratings) ** 2)))
            for k, name in enumerate(cfg.components)
        },
        "valid_rmse_blend": float(np.sqrt(np.mean((blended - valid.ratings) ** 2))),
    }
    if cfg.refit:
        steps = {n: int(i["steps"]) for n, i in fit_info.items() if i.get("steps")}
        full = RatingData.build(catalog, train_ix)
        models, info["refit"] = _fit_components(catalog, full, cfg, None, steps)
    return RatingBlend(models, weights.tolist(), positive, cfg.scale), info
