"""Run well-known recommender libraries on recserve's splits and score them with our metrics.

    python -m training.external.baselines --data-dir data --out reports/external_baselines.json

Top-K: per-user temporal 80/20 (training.evaluate.splits.topk_split); hyper-parameters and
epoch counts are chosen on the validation split (fit -> valid), then each model is refit on the
whole train split and ranks every item except the user's training items for each test user.
Recall@20 and NDCG@10 come from training.evaluate.metrics, the same code that scores recserve.
Rating: 5-fold random cross-validation (training.evaluate.splits.rating_folds), RMSE and MAE.

Runs in its own venv (training/external/requirements.txt): these libraries pin versions of
numpy/torch-era APIs that recserve does not need.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from training.data import load_movielens
from training.evaluate.metrics import mae, ndcg_at_k, recall_at_k, rmse
from training.evaluate.splits import rating_folds, topk_split

TOPK_PROTOCOL = (
    "per-user temporal 80/20 (training.split.temporal_split(events, 0.2)); tuned on the last 20% "
    "of train; full ranking over all items excluding the user's train items"
)
RATING_PROTOCOL = (
    "5-fold random CV over all ratings (training.evaluate.splits.rating_folds, seed 0)"
)
K_RECALL, K_NDCG = 20, 10


@dataclass(frozen=True)
class Space:
    """Dense indices for users and items (the whole catalog, so every item can be ranked)."""

    users: dict[str, int]
    items: dict[str, int]
    item_ids: np.ndarray

    @classmethod
    def of(cls, events: pd.DataFrame, items: pd.DataFrame) -> Space:
        user_ids = sorted(set(events["user_id"].astype(str)))
        item_ids = sorted(set(items["item_id"].astype(str)) | set(events["item_id"].astype(str)))
        return cls(
            {u: i for i, u in enumerate(user_ids)},
            {t: i for i, t in enumerate(item_ids)},
            np.asarray(item_ids),
        )

    def matrix(self, events: pd.DataFrame) -> sp.csr_matrix:
        """Binary user x item matrix of the events (duplicates counted once)."""
        rows = events["user_id"].astype(str).map(self.users).to_numpy()
        cols = events["item_id"].astype(str).map(self.items).to_numpy()
        data = np.ones(len(rows), dtype=np.float32)
        shape = (len(self.users), len(self.items))
        out = sp.csr_matrix((data, (rows, cols)), shape=shape)
        out.data[:] = 1.0
        return out


def score_topk(
    scores: Callable[[np.ndarray], np.ndarray],
    space: Space,
    train: pd.DataFrame,
    test: pd.DataFrame,
) -> dict[str, float]:
    """scores(user rows int[U]) -> float[U, n_items]; ranks all unseen items per test user."""
    seen = space.matrix(train)
    relevant = {
        space.users[u]: set(g.astype(str).map(space.items))
        for u, g in test.groupby(test["user_id"].astype(str))["item_id"]
    }
    users = np.asarray(sorted(relevant), dtype=np.int64)
    recommended: dict[int, list[int]] = {}
    for start in range(0, len(users), 256):
        rows = users[start : start + 256]
        s = np.asarray(scores(rows), dtype=np.float64)
        s[seen[rows].toarray() > 0] = -np.inf
        top = np.argsort(-s, axis=1, kind="stable")[:, : max(K_RECALL, K_NDCG)]
        recommended.update(zip(rows.tolist(), top.tolist(), strict=True))
    return {
        f"recall_at_{K_RECALL}": recall_at_k(recommended, relevant, K_RECALL),
        f"ndcg_at_{K_NDCG}": ndcg_at_k(recommended, relevant, K_NDCG),
        "n_users": len(users),
    }


# --- implicit ----------------------------------------------------------------------------------


def _implicit_model(name: str, params: dict[str, Any]) -> Any:
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.cpu.bpr import BayesianPersonalizedRanking

    cls = AlternatingLeastSquares if name == "ALS" else BayesianPersonalizedRanking
    return cls(**params, random_state=0, num_threads=2)


def _implicit_scores(model: Any) -> Callable[[np.ndarray], np.ndarray]:
    users, items = np.asarray(model.user_factors), np.asarray(model.item_factors)
    return lambda rows: users[rows] @ items.T


IMPLICIT_GRID: dict[str, list[dict[str, Any]]] = {
    "ALS": [
        {"factors": f, "regularization": r, "alpha": a, "iterations": 15}
        for f in (32, 64, 128)
        for r in (0.05, 1.0)
        for a in (1.0, 10.0)
    ],
    "BPR": [
        {"factors": f, "learning_rate": lr, "regularization": 0.01, "iterations": it}
        for f in (32, 64, 128)
        for lr in (0.01, 0.05)
        for it in (100, 300)
    ],
}


def run_implicit(name: str, space: Space, split: Any) -> dict[str, Any]:
    def fit(events: pd.DataFrame, params: dict[str, Any]) -> Any:
        model = _implicit_model(name, params)
        model.fit(space.matrix(events), show_progress=False)
        return model

    tuning = []
    for params in IMPLICIT_GRID[name]:
        valid = score_topk(_implicit_scores(fit(split.fit, params)), space, split.fit, split.valid)
        tuning.append({"params": params, "valid": valid})
    best = max(tuning, key=lambda t: t["valid"][f"ndcg_at_{K_NDCG}"])
    model = fit(split.train, best["params"])
    test = score_topk(_implicit_scores(model), space, split.train, split.test)
    return {"params": best["params"], "valid": best["valid"], "metrics": test,
            "n_configs_tried": len(tuning)}  # fmt: skip


# --- Surprise ----------------------------------------------------------------------------------


def run_surprise(name: str, folds: list[Any]) -> dict[str, Any]:
    from surprise import SVD, Dataset, Reader, SVDpp

    reader = Reader(rating_scale=(1, 5))
    per_fold = []
    for fold in folds:
        frame = fold.train[["user_id", "item_id", "rating"]].astype({"rating": float})
        trainset = Dataset.load_from_df(frame, reader).build_full_trainset()
        model = (SVD if name == "SVD" else SVDpp)(random_state=0)
        model.fit(trainset)
        truth = fold.test["rating"].to_numpy(np.float64)
        pred = np.asarray(
            [
                model.predict(u, i).est
                for u, i in zip(fold.test["user_id"], fold.test["item_id"], strict=True)
            ]
        )
        per_fold.append({"rmse": rmse(truth, pred), "mae": mae(truth, pred)})
    return {
        "params": "library defaults",
        "metrics": {
            "rmse": float(np.mean([f["rmse"] for f in per_fold])),
            "mae": float(np.mean([f["mae"] for f in per_fold])),
            "rmse_per_fold": [f["rmse"] for f in per_fold],
        },
    }


# --- RecBole -----------------------------------------------------------------------------------


def _compat_patches() -> None:
    """RecBole 1.2.1 still uses numpy aliases that numpy 2 removed, and LightGCN fills its
    adjacency matrix with dok_matrix._update, which scipy >= 1.12 no longer has."""
    for alias, target in (("bool8", np.bool_), ("float_", np.float64), ("complex_", np.complex128),
                          ("unicode_", np.str_)):  # fmt: skip
        if not hasattr(np, alias):
            setattr(np, alias, target)
    if not hasattr(sp.dok_matrix, "_update"):
        sp.dok_matrix._update = lambda self, entries: self._dict.update(entries)


def _write_atomic(root: Path, name: str, parts: dict[str, pd.DataFrame]) -> None:
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    for part, frame in parts.items():
        out = pd.DataFrame(
            {
                "user_id:token": frame["user_id"].astype(str),
                "item_id:token": frame["item_id"].astype(str),
                "rating:float": frame["rating"].astype(float),
                "timestamp:float": frame["timestamp"].astype(float),
            }
        )
        out.to_csv(folder / f"{name}.{part}.inter", sep="\t", index=False)


RECBOLE_GRID: dict[str, list[dict[str, Any]]] = {
    "BPR": [{"embedding_size": 64, "learning_rate": lr} for lr in (1e-3, 5e-3)],
    "LightGCN": [
        {"embedding_size": 64, "n_layers": n, "reg_weight": 1e-4, "learning_rate": lr}
        for n, lr in ((2, 1e-3), (3, 2e-3))
    ],
}


def _recbole_fit(
    model_name: str, params: dict[str, Any], root: Path, name: str, epochs: int, valid: bool
) -> tuple[Any, Any, int]:
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.utils import get_model, get_trainer, init_seed

    config = Config(
        model=model_name,
        dataset=name,
        config_dict={
            "data_path": str(root),
            "benchmark_filename": ["train", "valid", "test"],
            "load_col": {"inter": ["user_id", "item_id", "rating", "timestamp"]},
            "eval_args": {"group_by": "user", "order": "TO", "mode": "full"},
            "metrics": ["Recall", "NDCG"],
            "topk": [10, 20],
            "valid_metric": "NDCG@10",
            "epochs": epochs,
            "stopping_step": 10,
            "train_batch_size": 2048,
            "eval_batch_size": 4096,
            "use_gpu": False,
            "device": "cpu",
            "seed": 0,
            "reproducibility": True,
            "show_progress": False,
            "checkpoint_dir": str(root / "saved"),
            "log_wandb": False,
            **params,
        },
    )
    torch.set_num_threads(2)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, valid_data, _ = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, train_data._dataset).to(config["device"])
    trainer = get_trainer(config["MODEL_TYPE"], config["model"])(config, model)
    best: dict[str, Any] = {}

    def keep_best_in_memory(*_args: Any, **_kwargs: Any) -> None:
        # RecBole saves a pickled checkpoint at each new best validation score; keep a copy of
        # the weights instead, so nothing is ever unpickled (docs/security.md).
        best["state"] = {k: v.detach().clone() for k, v in model.state_dict().items()}

    trainer._save_checkpoint = keep_best_in_memory
    trainer.fit(train_data, valid_data if valid else None, saved=valid, show_progress=False)
    best_epoch = len(trainer.train_loss_dict) - (trainer.cur_step if valid else 0)
    if valid and "state" in best:  # back to the best validation epoch
        model.load_state_dict(best["state"])
    return model, dataset, best_epoch


def _recbole_scores(model: Any, dataset: Any, space: Space) -> Callable[[np.ndarray], np.ndarray]:
    import torch
    from recbole.data.interaction import Interaction

    user_tokens = np.asarray(sorted(space.users, key=space.users.get))
    item_rows = np.asarray([space.items[t] for t in dataset.field2id_token["item_id"][1:]])

    def scores(rows: np.ndarray) -> np.ndarray:
        ids = dataset.token2id("user_id", user_tokens[rows].tolist())
        model.eval()
        with torch.no_grad():
            s = model.full_sort_predict(Interaction({"user_id": torch.as_tensor(ids)}))
        s = s.view(len(rows), -1).numpy()[:, 1:]  # column 0 is RecBole's padding item
        out = np.full((len(rows), len(space.items)), -1e9, dtype=np.float64)
        out[:, item_rows] = s
        return out

    return scores


def run_recbole(model_name: str, space: Space, split: Any, work: Path) -> dict[str, Any]:
    _compat_patches()
    cwd = Path.cwd()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # RecBole writes log/ and saved/ under the working directory
    try:
        _write_atomic(work, "tune", {"train": split.fit, "valid": split.valid, "test": split.valid})
        tuning = []
        for params in RECBOLE_GRID[model_name]:
            model, dataset, epochs = _recbole_fit(model_name, params, work, "tune", 300, True)
            scores = _recbole_scores(model, dataset, space)
            valid = score_topk(scores, space, split.fit, split.valid)
            tuning.append({"params": {**params, "epochs": max(epochs, 1)}, "valid": valid})
        best = max(tuning, key=lambda t: t["valid"][f"ndcg_at_{K_NDCG}"])
        params = {k: v for k, v in best["params"].items() if k != "epochs"}
        final = {"train": split.train, "valid": split.test, "test": split.test}
        _write_atomic(work, "final", final)
        epochs = best["params"]["epochs"]
        model, dataset, _ = _recbole_fit(model_name, params, work, "final", epochs, False)
        test = score_topk(_recbole_scores(model, dataset, space), space, split.train, split.test)
    finally:
        os.chdir(cwd)
    return {"params": best["params"], "valid": best["valid"], "metrics": test,
            "n_configs_tried": len(tuning)}  # fmt: skip


# --- main --------------------------------------------------------------------------------------


def _versions(package: str) -> str:
    try:
        return version(package)
    except Exception:  # not installed
        return "not installed"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.external.baselines")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--out", type=Path, default=Path("reports/external_baselines.json"))
    parser.add_argument("--work", type=Path, default=Path("runs/external"))
    parser.add_argument("--only", default="implicit,surprise,recbole",
                        help="comma-separated libraries to run")  # fmt: skip
    args = parser.parse_args(argv)
    command = "python -m training.external.baselines " + shlex.join(argv or sys.argv[1:])
    libraries = set(args.only.split(","))
    movielens = load_movielens(args.data_dir / "ml-100k")
    split = topk_split(movielens.events)
    space = Space.of(movielens.events, movielens.items)
    jobs: list[tuple[str, str, str, Callable[[], dict[str, Any]]]] = []
    if "implicit" in libraries:
        for name in ("ALS", "BPR"):
            jobs.append(("implicit", name, TOPK_PROTOCOL,
                         lambda n=name: run_implicit(n, space, split)))  # fmt: skip
    if "recbole" in libraries:
        for name in ("BPR", "LightGCN"):
            jobs.append(("recbole", name, TOPK_PROTOCOL,
                         lambda n=name: run_recbole(n, space, split, args.work / n)))  # fmt: skip
    if "surprise" in libraries:
        folds = rating_folds(movielens.events)
        for name in ("SVD", "SVD++"):
            jobs.append(("scikit-surprise", name, RATING_PROTOCOL,
                         lambda n=name: run_surprise(n, folds)))  # fmt: skip
    previous = json.loads(args.out.read_text()) if args.out.exists() else []
    results = {(r["library"], r["model"]): r for r in previous}
    for library, model, protocol, job in jobs:
        start = time.perf_counter()
        outcome = job()
        seconds = round(time.perf_counter() - start, 1)
        results[(library, model)] = {
            "library": library,
            "version": _versions(library),
            "model": model,
            "protocol": protocol,
            **outcome,
            "seconds": seconds,
            "command": command,
        }
        print(json.dumps({"library": library, "model": model, **outcome["metrics"],
                          "seconds": seconds}), flush=True)  # fmt: skip
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(list(results.values()), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
