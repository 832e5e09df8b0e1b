"""Rating prediction: 5-fold random cross-validation, RMSE / MAE per fold and their mean, for
ours (a bundle trained per fold; ranker.onnx's `rating`) and the rating references."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.data import InteractionData
from training.evaluate import metrics as M
from training.evaluate.references import BiasedMF, GlobalMean
from training.evaluate.scoring import activity_buckets, score_ratings
from training.evaluate.splits import Fold

ACTIVITY_EDGES = (30, 60, 120, 240)
MF_GRID = ({"factors": 20, "reg": 0.08}, {"factors": 50, "reg": 0.1}, {"factors": 50, "reg": 0.15})


def tune_biased_mf(train: pd.DataFrame, seed: int = 0) -> tuple[dict[str, Any], dict[str, float]]:
    """Pick BiasedMF hyper-parameters on a random 10% of one fold's train (never its test)."""
    rng = np.random.default_rng(seed + 100)
    hold = rng.random(len(train)) < 0.1
    fit, valid = train[~hold], train[hold]
    scores = {}
    for params in MF_GRID:
        pred = BiasedMF(**params, seed=seed).fit(fit).predict(valid)
        scores[str(params)] = M.rmse(valid["rating"].to_numpy(), pred)
    best = min(MF_GRID, key=lambda p: scores[str(p)])
    return dict(best), scores


def cross_validate(
    folds: list[Fold],
    data: InteractionData,
    ours: Callable[[int, Fold], pd.DataFrame] | None,
    seed: int = 0,
    log: Callable[[str], None] = print,
    ours_folds: int | None = None,
) -> tuple[dict[str, Any], pd.DataFrame]:
    """ours(fold_number, fold) -> the fold's test rows with a `prediction` column (None: skip),
    run on the first `ours_folds` folds (None: all).
    -> (summary per system, every test prediction: fold, system, user_id, item_id, rating,
    prediction, bucket)."""
    best, tuning = tune_biased_mf(folds[0].train, seed)
    log(f"[eval] biased MF tuned on fold 0's train: {best}")
    rows = []
    seconds: dict[str, float] = {}
    for f, fold in enumerate(folds):
        truth = fold.test[["user_id", "item_id", "rating"]].reset_index(drop=True)
        buckets = activity_buckets(fold.train, truth, ACTIVITY_EDGES)
        systems: dict[str, Callable[[], np.ndarray]] = {
            "global_mean": lambda fold=fold, t=truth: GlobalMean().fit(fold.train).predict(t),
            "biases": lambda fold=fold, t=truth: BiasedMF(0).fit(fold.train).predict(t),
            "biased_mf": lambda fold=fold, t=truth: (
                BiasedMF(**best, seed=seed).fit(fold.train).predict(t)
            ),
        }
        if ours is not None and (ours_folds is None or f < ours_folds):
            systems["ours"] = lambda f=f, fold=fold: ours(f, fold)["prediction"].to_numpy()
        for name, predict in systems.items():
            start = time.perf_counter()
            pred = np.asarray(predict(), dtype=np.float64)
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - start
            rows.append(truth.assign(fold=f, system=name, prediction=pred, bucket=buckets))
            log(f"[eval] rating fold {f} {name}: rmse {M.rmse(truth['rating'], pred):.4f}")
    preds = pd.concat(rows, ignore_index=True)
    summary: dict[str, Any] = {"systems": {}, "by_activity": {}, "tuning": tuning, "best": best}
    for name, group in preds.groupby("system", sort=False):
        per_fold = [
            score_ratings(g["rating"].to_numpy(), g["prediction"].to_numpy())
            for _, g in group.groupby("fold")
        ]
        summary["systems"][name] = {
            "rmse": float(np.mean([s["rmse"] for s in per_fold])),
            "mae": float(np.mean([s["mae"] for s in per_fold])),
            "rmse_folds": [s["rmse"] for s in per_fold],
            "rmse_std": float(np.std([s["rmse"] for s in per_fold])),
            "seconds": round(seconds[name], 1),
        }
        summary["by_activity"][name] = {
            str(b): {"rmse": M.rmse(g["rating"], g["prediction"]), "n": len(g)}
            for b, g in group.groupby("bucket", sort=False)
        }
    return summary, preds


def ours_fold_predictor(
    data: InteractionData,
    artifacts_dir: Path,
    *,
    data_dir: Path,
    tiny: bool,
    log: Callable[[str], None],
) -> Callable[[int, Fold], pd.DataFrame]:
    """A bundle trained on each fold's train; predictions = ranker.onnx's `rating` (the
    bundle's dedicated rating model, training.models.rating_train) with each user's serving
    state (history = their training ratings in that fold), through the ranking service's
    OnnxRanker. The fold bundles are rating-only (TrainConfig.rating_only): the rating model
    is trained by the same code as in a full bundle; the retrieval/ranker/value models are not
    trained, since nothing here measures them."""
    from training.evaluate.ours import OurModel, train_bundle

    def predict(f: int, fold: Fold) -> pd.DataFrame:
        start = time.perf_counter()
        bundle = train_bundle(
            fold.train,
            data,
            artifacts_dir,
            f"rating-fold{f}",
            data_dir=data_dir,
            tiny=tiny,
            rating_only=True,
        )
        log(f"[eval] trained fold {f} bundle in {time.perf_counter() - start:.0f}s")
        return OurModel.load(bundle).predict(fold.test[["user_id", "item_id"]])

    return predict
