"""The whole offline evaluation (`make eval`): splits → references → ours → tags → ratings →
reports/eval.json (+ eval.md and PNGs via training.evaluate.report).

    results = run_eval(EvalConfig())
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.data import load_movielens
from training.evaluate import references as R
from training.evaluate import scoring as S
from training.evaluate.io import write_predictions, write_topk
from training.evaluate.rating import cross_validate, ours_fold_predictor
from training.evaluate.splits import (
    N_FOLDS,
    TopKSplit,
    rating_folds,
    topk_split,
    write_splits,
)
from training.evaluate.tags import evaluate_tags

K = 100
COLD_THRESHOLD = 30  # training events; ML-100K users have >= 20 ratings, so >= 16 in train
KNN_GRID = (50, 100, 200, 400, 800, 1682)
ALS_GRID = (
    {"factors": 64, "reg": 10.0, "alpha": 10.0},
    {"factors": 64, "reg": 50.0, "alpha": 5.0},
    {"factors": 128, "reg": 50.0, "alpha": 10.0},
    {"factors": 128, "reg": 100.0, "alpha": 20.0},
)
EASE_GRID = (50.0, 100.0, 250.0, 500.0, 1000.0)
TUNE_METRIC = "ndcg@10"
COLD_STEP = "cold items (2 two-towers + ranker + text)"
TINY_COLD_FIT_ITEMS = 300  # tiny preset: the projection is fitted on the most popular items


@dataclass(frozen=True)
class EvalConfig:
    data_dir: Path = Path("data")
    out_dir: Path = Path("reports")
    splits_dir: Path = Path("data/splits")
    artifacts_dir: Path = Path("runs/eval/artifacts")
    folds: int = N_FOLDS  # rating CV folds trained for ours (0 = references only)
    seed: int = 0
    tiny: bool = False  # quick preset for tests: tiny bundles
    gateway: bool = True  # also score the answer through a running gateway
    max_users: int | None = None  # score only the first N test users (tests)
    cold_items: bool = True  # the cold-item evaluation (training.evaluate.cold_items)


def _log(msg: str) -> None:
    print(msg, flush=True)


class _Clock:
    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        start = time.perf_counter()
        out = fn()
        self.seconds[name] = round(time.perf_counter() - start, 1)
        _log(f"[eval] {name}: {self.seconds[name]:.1f}s")
        return out


def tune_references(
    split: TopKSplit, items: pd.DataFrame, seed: int = 0
) -> tuple[dict[str, R.TopKModel], dict[str, Any]]:
    """Hyper-parameters picked on fit → valid (the end of train), never on test."""
    data = R.Interactions.from_events(split.fit, items["item_id"].astype(str).tolist())
    relevant = S.relevant_items(split.fit, split.valid)
    users = sorted(relevant)
    log: dict[str, Any] = {"metric": TUNE_METRIC, "knn": {}, "als": {}, "ease": {}}

    def score(model: R.TopKModel) -> float:
        rec = R.recommend(model.fit(data), data, users, 10)
        return S.M.ndcg_at_k(rec, relevant, 10)

    for n in KNN_GRID:
        log["knn"][str(n)] = score(R.ItemKNN(n))
    for params in ALS_GRID:
        log["als"][json.dumps(params)] = score(R.ImplicitALS(**params, seed=seed))
    for lam in EASE_GRID:
        log["ease"][str(lam)] = score(R.EASE(lam))
    best_n = max(KNN_GRID, key=lambda n: log["knn"][str(n)])
    best_als = max(ALS_GRID, key=lambda p: log["als"][json.dumps(p)])
    best_lam = max(EASE_GRID, key=lambda lam: log["ease"][str(lam)])
    log["best"] = {"item_knn": {"neighbours": best_n}, "implicit_als": best_als,
                   "ease": {"lambda": best_lam}}  # fmt: skip
    models: dict[str, R.TopKModel] = {
        "popularity": R.Popularity(),
        "item_knn": R.ItemKNN(best_n),
        "implicit_als": R.ImplicitALS(**best_als, seed=seed),
        "ease": R.EASE(best_lam),
    }
    return models, log


def reference_lists(
    models: Mapping[str, R.TopKModel], train: pd.DataFrame, items: pd.DataFrame, users: list[str]
) -> dict[str, dict[str, list[str]]]:
    data = R.Interactions.from_events(train, items["item_id"].astype(str).tolist())
    return {name: R.recommend(m.fit(data), data, users, K) for name, m in models.items()}


def score_systems(
    lists: Mapping[str, Mapping[str, Sequence[str]]],
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame,
) -> dict[str, Any]:
    relevant = S.relevant_items(train, test)
    groups = S.split_users(train, sorted(relevant), COLD_THRESHOLD)
    out: dict[str, Any] = {"systems": {}, "curves": {}, "cold_warm": {}}
    for name, rec in lists.items():
        out["systems"][name] = S.score_topk(rec, relevant, train, items)
        out["curves"][name] = S.topk_curves(rec, relevant)
        out["cold_warm"][name] = {
            group: {
                m: S.M.ndcg_at_k(rec, {u: relevant[u] for u in users}, 10)
                if m == "ndcg@10"
                else S.M.recall_at_k(rec, {u: relevant[u] for u in users}, 20)
                for m in ("recall@20", "ndcg@10")
            }
            for group, users in groups.items()
        }
    out["cold_warm_users"] = {g: len(u) for g, u in groups.items()}
    out["cold_threshold"] = COLD_THRESHOLD
    return out


def _agreement(a: Mapping[str, Sequence[str]], b: Mapping[str, Sequence[str]]) -> float:
    """Share of users whose two lists are identical."""
    users = list(a)
    return float(np.mean([list(a[u]) == list(b.get(u, ())) for u in users])) if users else 0.0


def manifest_metrics(results: Mapping[str, Any]) -> dict[str, Any]:
    """The compact block a bundle manifest records (metrics.evaluation)."""
    topk = results["topk"]["systems"]
    ours = topk.get("two_stage", {})
    out: dict[str, Any] = {
        "protocol": "per-user temporal 80/20 (full ranking, train items excluded); "
        "rating: 5-fold random CV",
        "two_stage": {m: ours.get(m) for m in ("recall@20", "ndcg@10", "hit_rate@10")},
        "retrieval": {m: topk.get("retrieval", {}).get(m) for m in ("recall@20", "ndcg@10")},
        "best_reference": results["topk"].get("best_reference"),
        "two_stage_not_worse_than_retrieval": results["checks"].get("two_stage_not_worse"),
    }
    prob = results.get("probability", {})
    out["ranker"] = {
        "auc": prob.get("auc"),
        "log_loss": prob.get("log_loss"),
        "ece": prob.get("ece"),
    }
    rating = results.get("rating", {}).get("systems", {}).get("ours")
    if rating:
        out["rating"] = {
            "rmse": rating["rmse"],
            "mae": rating["mae"],
            "folds": rating["rmse_folds"],
        }
    cold = results.get("cold_items")
    if cold:
        out["cold_items"] = {
            name: {**cold["cold_only"][name], **cold["all_items"][name]}
            for name in ("content", "random", "upper_bound")
        }
    out["bundles"] = results["meta"].get("bundles")
    return out


def _cold_items(cfg: EvalConfig, split: TopKSplit, test: pd.DataFrame, data) -> dict[str, Any]:
    from training.evaluate.cold_items import evaluate_cold_items

    return evaluate_cold_items(
        split.train, test, data, seed=cfg.seed, tiny=cfg.tiny,
        max_fit_items=TINY_COLD_FIT_ITEMS if cfg.tiny else None,
    )  # fmt: skip


def _test_users(cfg: EvalConfig, split: TopKSplit) -> tuple[list[str], pd.DataFrame]:
    relevant = S.relevant_items(split.train, split.test)
    users = sorted(relevant)[: cfg.max_users] if cfg.max_users else sorted(relevant)
    return users, split.test[split.test["user_id"].isin(set(users))]


def run_cold_items(cfg: EvalConfig) -> dict[str, Any]:
    """Only the cold-item evaluation (`python -m training.evaluate cold-items`): the same split
    and call as in run_eval; its result replaces results["cold_items"] of out_dir/eval.json
    (every other section is kept as the last full run wrote it)."""
    data = load_movielens(cfg.data_dir / "ml-100k")
    split = topk_split(data.events)
    _, test = _test_users(cfg, split)
    start = time.perf_counter()
    cold = _cold_items(cfg, split, test, data)
    path = Path(cfg.out_dir) / "eval.json"
    if not path.exists():
        raise FileNotFoundError(f"{path}: run the whole evaluation first (make eval)")
    results = json.loads(path.read_text())
    if results["meta"]["data"]["sha256"] != data.sha256:
        raise ValueError(f"{path} was computed on other data ({results['meta']['data']})")
    if results["meta"]["config"].get("tiny") != str(cfg.tiny):
        raise ValueError(f"{path} is from a run with tiny={results['meta']['config']['tiny']}")
    command = "python -m training.evaluate cold-items" + (f" --seed {cfg.seed}" if cfg.seed else "")
    cold["rerun"] = command  # the report says so
    results["cold_items"] = cold
    step, took = COLD_STEP, round(time.perf_counter() - start, 1)
    results["meta"]["seconds"] = {
        (step if k.startswith("cold items") else k): (took if k.startswith("cold items") else v)
        for k, v in results["meta"]["seconds"].items()
    }
    path.write_text(json.dumps(results, indent=1, default=float) + "\n")
    (Path(cfg.out_dir) / "eval_metrics.json").write_text(
        json.dumps(manifest_metrics(results), indent=2, default=float) + "\n"
    )
    return results


def run_eval(cfg: EvalConfig) -> dict[str, Any]:
    from training.evaluate.ours import OurModel, gateway_answers, train_bundle

    clock = _Clock()
    total = time.perf_counter()
    data = load_movielens(cfg.data_dir / "ml-100k")
    items = data.items
    split = topk_split(data.events)
    folds = rating_folds(data.events, N_FOLDS, cfg.seed)
    split_meta = clock(
        "write splits",
        lambda: write_splits(
            cfg.splits_dir, split, folds, {"seed": cfg.seed, "source": data.source,
                                           "data_sha256": data.sha256},
        ),
    )  # fmt: skip
    users, test = _test_users(cfg, split)

    models, tuning = clock("tune references on valid", lambda: tune_references(split, items))
    lists = clock("references on test", lambda: reference_lists(models, split.train, items, users))

    bundle = clock(
        "train ours on train split",
        lambda: train_bundle(
            split.train, data, cfg.artifacts_dir, "topk", data_dir=cfg.data_dir, tiny=cfg.tiny
        ),
    )
    ours = OurModel.load(bundle, split.test)
    lists["retrieval"] = clock("ours: retrieval", lambda: ours.retrieve(users, K))
    lists["two_stage"] = clock("ours: two-stage", lambda: ours.two_stage(users, K))
    if cfg.gateway:
        lists["gateway"] = clock("ours: gateway", lambda: gateway_answers(bundle, users, K))
    topk = score_systems(lists, split.train, test, items)
    refs = ("popularity", "item_knn", "implicit_als", "ease")
    best_ref = max(refs, key=lambda n: topk["systems"][n]["ndcg@10"])
    topk["best_reference"] = best_ref
    topk["tuning"] = tuning

    out_dir = Path(cfg.out_dir)
    write_topk(lists["two_stage"], cfg.splits_dir / "answers" / "ours_topk.tsv")

    preds = ours.predict(test[["user_id", "item_id", "rating"]])
    probability = S.score_probabilities(preds["rating"].to_numpy(), preds["p_positive"].to_numpy())
    probability["rating_on_topk_test"] = S.score_ratings(
        preds["rating"].to_numpy(), preds["prediction"].to_numpy()
    )

    cold_items = clock(
        COLD_STEP, lambda: _cold_items(cfg, split, test, data)
    ) if cfg.cold_items else None  # fmt: skip
    tags = clock(
        "tags",
        lambda: evaluate_tags(split.train, test, items, ours.tag_affinities(users)),
    )
    rating_summary, rating_preds = clock(
        "rating 5-fold CV",
        lambda: cross_validate(
            folds,
            data,
            ours_fold_predictor(
                data, cfg.artifacts_dir, data_dir=cfg.data_dir, tiny=cfg.tiny, log=_log
            )
            if cfg.folds
            else None,
            cfg.seed,
            log=_log,
            ours_folds=cfg.folds,
        ),
    )
    ours_rows = rating_preds[rating_preds["system"] == "ours"]
    if len(ours_rows):
        write_predictions(ours_rows, cfg.splits_dir / "answers" / "ours_rating_predictions.tsv")

    two, ret = topk["systems"]["two_stage"], topk["systems"]["retrieval"]
    checks = {
        "two_stage_not_worse": bool(
            two["recall@20"] >= ret["recall@20"] - 1e-9 and two["ndcg@10"] >= ret["ndcg@10"] - 1e-9
        ),
        "gateway_matches_two_stage": _agreement(lists["two_stage"], lists["gateway"])
        if "gateway" in lists
        else None,
    }
    results: dict[str, Any] = {
        "meta": {
            "config": {k: str(v) for k, v in asdict(cfg).items()},
            "data": {"source": data.source, "sha256": data.sha256, "n_events": data.n_events},
            "split": split_meta,
            "bundles": {"topk": bundle.name},
            "seconds": clock.seconds,
        },
        "topk": topk,
        "checks": checks,
        "probability": probability,
        "tags": tags,
        "rating": rating_summary,
    }
    if cold_items is not None:
        results["cold_items"] = cold_items
    results["meta"]["seconds"]["total"] = round(time.perf_counter() - total, 1)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "eval.json").write_text(json.dumps(results, indent=1, default=float) + "\n")
    (out_dir / "eval_metrics.json").write_text(
        json.dumps(manifest_metrics(results), indent=2, default=float) + "\n"
    )
    return results
