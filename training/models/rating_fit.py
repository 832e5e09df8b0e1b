"""Training of the rating models (training.models.rating): full-batch AdamW with L2 per rating,
early stopping on a validation set carved out of train, a least-squares blend and a logistic
P(rating >= 4), both fitted on that validation set.

    fitted = fit_rating_model(RatingData.build(catalog, fit_ix), valid_ix, config)

`RatingData` holds what the models train on: (user, item, rating) triples plus each user's
served inputs (profile and latest history), the same arrays the ranking service sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn

from services.contract.features import latest_values
from training.encode import EncodedCatalog
from training.models.rating import AutoRecNet, AutoRecScorer, SVDpp


@dataclass(frozen=True)
class RatingConfig:
    factors: int = 64
    reg: float = 0.05  # L2 per rating on the user's / item's own parameters
    side_reg: float = 1e-3  # L2 (x number of ratings) on side-feature and implicit tables
    lr: float = 0.01
    max_steps: int = 600
    autorec_hidden: int = 500
    autorec_reg: float = 1.0
    autorec_lr: float = 0.01
    autorec_max_steps: int = 400
    eval_every: int = 10
    patience: int = 5  # evaluations without improvement before stopping
    seed: int = 0


@dataclass(frozen=True)
class RatingData:
    """int64 users[R], items[R], float32 ratings[R]; profiles int64[U, P], histories
    int64[U, H] (each user's latest history in these events, most recent first)."""

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    profiles: np.ndarray
    histories: np.ndarray
    n_items: int

    @classmethod
    def build(cls, catalog: EncodedCatalog, indexed: pd.DataFrame) -> RatingData:
        """indexed: events with user_index/item_index, sorted by (user, time)."""
        rated = indexed[indexed["rating"].notna() & (indexed["item_index"] > 0)]
        return cls(
            rated["user_index"].to_numpy(np.int64, copy=True),
            rated["item_index"].to_numpy(np.int64, copy=True),
            rated["rating"].to_numpy(np.float32, copy=True),
            catalog.user_profiles,
            latest_histories(catalog, indexed),
            catalog.n_items,
        )

    @property
    def n_users(self) -> int:
        return len(self.profiles)


def latest_histories(catalog: EncodedCatalog, indexed: pd.DataFrame) -> np.ndarray:
    """int64[U, H]: each user's history at the end of `indexed` (sorted by user/time), what the
    feature service serves (known items only, most recent first)."""
    items = indexed["item_index"].to_numpy(np.int64)
    users = indexed["user_index"].to_numpy(np.int64)
    return latest_values(users, items > 0, items, catalog.n_users, catalog.spec.history_len)


Scorer = Callable[[np.ndarray, np.ndarray], np.ndarray]


def _rmse(truth: np.ndarray, pred: np.ndarray) -> float:
    return float(np.sqrt(np.mean((np.clip(pred, 1.0, 5.0) - truth) ** 2)))


def _early_stopping(
    step: Callable[[], None],
    score: Callable[[], float] | None,
    max_steps: int,
    every: int,
    patience: int,
    snapshot: Callable[[], dict[str, torch.Tensor]],
    restore: Callable[[dict[str, torch.Tensor]], None],
) -> tuple[int, float | None]:
    """Run `step` up to max_steps times; with `score` (lower is better), keep the best state
    seen every `every` steps and stop after `patience` checks without improvement.
    -> (steps of the kept state, its score)."""
    if score is None:
        for _ in range(max_steps):
            step()
        return max_steps, None
    best, best_step, state, bad = float("inf"), 0, snapshot(), 0
    for n in range(1, max_steps + 1):
        step()
        if n % every and n != max_steps:
            continue
        value = score()
        if value < best - 1e-5:
            best, best_step, state, bad = value, n, snapshot(), 0
        else:
            bad += 1
            if bad >= patience:
                break
    restore(state)
    return best_step, best


def _state(module: nn.Module) -> Callable[[], dict[str, torch.Tensor]]:
    return lambda: {k: v.detach().clone() for k, v in module.state_dict().items()}


def fit_svdpp(
    catalog: EncodedCatalog,
    data: RatingData,
    cfg: RatingConfig,
    valid: RatingData | None = None,
    steps: int | None = None,
) -> tuple[SVDpp, dict[str, float | int | None]]:
    """Full-batch AdamW on squared error + L2; early stopping on `valid` (else `steps`)."""
    torch.manual_seed(cfg.seed)
    model = SVDpp(
        catalog.n_users,
        catalog.n_items,
        catalog.spec.profile_cardinalities,
        catalog.item_tags,
        catalog.item_attrs,
        catalog.spec.item_cardinalities,
        cfg.factors,
        float(data.ratings.mean()),
    )
    users, items = torch.as_tensor(data.users.copy()), torch.as_tensor(data.items.copy())
    ratings = torch.as_tensor(data.ratings.copy())
    all_users = torch.arange(data.n_users)
    all_items = torch.arange(data.n_items)
    profiles, histories = torch.from_numpy(data.profiles), torch.from_numpy(data.histories)
    n_u = torch.bincount(users, minlength=data.n_users).float().unsqueeze(1)
    n_i = torch.bincount(items, minlength=data.n_items).float().unsqueeze(1)
    own = [(model.user, n_u), (model.user_bias, n_u), (model.item, n_i), (model.item_bias, n_i)]
    side = [model.implicit.weight, model.tag.weight, *(t.weight for t in model.attrs)]
    side += [t.weight for t in model.profile]
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)

    def predict_all() -> tuple[torch.Tensor, torch.Tensor]:
        return model.user_vectors(all_users, profiles, histories), model.item_vectors(all_items)

    def step() -> None:
        u, i = predict_all()
        pred = SVDpp.combine(
            model.mu, torch.index_select(u, 0, users), torch.index_select(i, 0, items)
        )
        loss = ((pred - ratings) ** 2).mean()
        penalty = sum((w * t.weight**2).sum() for t, w in own) * cfg.reg
        penalty = penalty + cfg.side_reg * sum((p**2).sum() for p in side) * len(ratings)
        loss = loss + penalty / len(ratings)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    def score() -> float:
        assert valid is not None
        with torch.no_grad():
            u, i = predict_all()
            pred = SVDpp.combine(
                model.mu, u[torch.from_numpy(valid.users)], i[torch.from_numpy(valid.items)]
            )
        return _rmse(valid.ratings, pred.numpy())

    start = time.perf_counter()
    model.train()
    kept, best = _early_stopping(
        step,
        score if valid is not None else None,
        steps or cfg.max_steps,
        cfg.eval_every,
        cfg.patience,
        _state(model),
        model.load_state_dict,
    )
    model.eval()
    return model, {"steps": kept, "valid_rmse": best, "seconds": time.perf_counter() - start}


def item_rating_matrix(data: RatingData) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (ratings float[I, U], observed mask float[I, U]) of the training triples."""
    matrix = torch.zeros(data.n_items, data.n_users)
    mask = torch.zeros(data.n_items, data.n_users)
    items, users = torch.from_numpy(data.items), torch.from_numpy(data.users)
    matrix[items, users] = torch.from_numpy(data.ratings)
    mask[items, users] = 1.0
    return matrix, mask


def fit_autorec(
    data: RatingData,
    cfg: RatingConfig,
    valid: RatingData | None = None,
    steps: int | None = None,
) -> tuple[AutoRecScorer, dict[str, float | int | None]]:
    """I-AutoRec: masked squared error summed over observed ratings + reg/2 ||weights||^2,
    full-batch Adam; early stopping on `valid` (else `steps`)."""
    torch.manual_seed(cfg.seed + 1)
    matrix, mask = item_rating_matrix(data)
    net = AutoRecNet(data.n_users, cfg.autorec_hidden)
    optimizer = torch.optim.Adam(net.parameters(), lr=cfg.autorec_lr)
    n_obs = float(mask.sum())

    def step() -> None:
        out = net(matrix)
        loss = (((out - matrix) * mask) ** 2).sum()
        loss = loss + cfg.autorec_reg / 2 * (net.encoder.weight.pow(2).sum() +
                                             net.decoder.weight.pow(2).sum())  # fmt: skip
        optimizer.zero_grad(set_to_none=True)
        (loss / n_obs).backward()
        optimizer.step()

    def score() -> float:
        assert valid is not None
        with torch.no_grad():
            out = net(matrix)
        return _rmse(valid.ratings, out[valid.items, valid.users].numpy())

    start = time.perf_counter()
    net.train()
    kept, best = _early_stopping(
        step,
        score if valid is not None else None,
        steps or cfg.autorec_max_steps,
        cfg.eval_every,
        cfg.patience,
        _state(net),
        net.load_state_dict,
    )
    net.eval()
    info = {"steps": kept, "valid_rmse": best, "seconds": time.perf_counter() - start}
    return AutoRecScorer(net, matrix), info
