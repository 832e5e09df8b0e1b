"""Run well-known recommender libraries on recserve's splits and score them with our metrics.

    python -m training.external.baselines --data-dir data --out reports/external_baselines.json

Top-K: per-user temporal 80/20 (training.evaluate.splits.topk_split); hyper-parameters and
epoch counts are chosen on the validation split (fit -> valid), then each model is refit on the
whole train split and ranks every item except the user's training items for each test user.
Recall@20 and NDCG@10 come from training.evaluate.metrics, the same code that scores recserve.
Rating: 5-fold random cross-validation (training.evaluate.splits.rating_folds), RMSE and MAE.

Sequential peers (RecBole SASRec, GRU4Rec; run_sequential): cross-entropy over all items, the
user's last MAX_SEQ_LEN items in time order as input (from `fit` when validating, from `train`
when testing), early stopping on validation, refit on train for the best epoch count.

    python -m training.external.baselines --data instacart --data-dir data --only implicit,recbole

Next basket (--data NAME, not movielens): the split and metrics of `make eval DATA=NAME`
(training.evaluate.baskets: each user's last basket is test, the one before valid; Recall@20
and NDCG@10 over the basket's distinct items, bought items allowed) ->
reports/external_baselines_NAME.json; each entry carries its `dataset`.

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


@dataclass(frozen=True)
class Task:
    """One split and how to score a model on it: `fit -> valid` for tuning, `train -> test` for
    the final number. score_valid / score_test take scores(user rows) -> float[U, n_items]."""

    dataset: str
    space: Space
    fit: pd.DataFrame
    valid: pd.DataFrame
    train: pd.DataFrame
    test: pd.DataFrame
    tune_metric: str
    protocol: str
    exclude_seen: bool  # True: the user's history items are never recommended

    def score_valid(self, scores: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        return self._score(scores, self.fit, self.valid)

    def score_test(self, scores: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        return self._score(scores, self.train, self.test)

    def _score(
        self, scores: Callable[[np.ndarray], np.ndarray], history: pd.DataFrame,
        target: pd.DataFrame,
    ) -> dict[str, float]:  # fmt: skip
        if self.exclude_seen:
            return score_topk(scores, self.space, history, target)
        return score_next_basket(scores, self.space, history, target)


def movielens_task(data_dir: Path) -> tuple[Task, Any]:
    """-> (the top-K task on MovieLens-100K, the MovieLens data for the rating folds)."""
    movielens = load_movielens(data_dir / "ml-100k")
    split = topk_split(movielens.events)
    space = Space.of(movielens.events, movielens.items)
    task = Task("movielens-100k", space, split.fit, split.valid, split.train, split.test,
                f"ndcg_at_{K_NDCG}", TOPK_PROTOCOL, exclude_seen=True)  # fmt: skip
    return task, movielens


BASKET_PROTOCOL = (
    "next basket (training.evaluate.baskets.basket_split): each user's last basket is test, the "
    "one before valid (tuning: fit -> valid); relevant = the basket's distinct items; full "
    "ranking over the catalog, already-bought items allowed (as `make eval DATA={name}`)"
)


def basket_task(data_dir: Path, name: str) -> Task:
    """The next-basket task of `make eval DATA=<name>` (training.evaluate.basket_run)."""
    from training.data.builtin import resolve
    from training.data.dataset import load_dataset
    from training.evaluate.basket_run import item_ids
    from training.evaluate.baskets import basket_split

    data = load_dataset(resolve(data_dir, name))
    split = basket_split(data.events)
    catalog = pd.DataFrame({"item_id": item_ids(data)})
    space = Space.of(data.events, catalog)
    protocol = BASKET_PROTOCOL.format(name=name)
    return Task(data.source, space, split.fit, split.valid, split.train, split.test,
                f"ndcg@{K_NDCG}", protocol, exclude_seen=False)  # fmt: skip


def score_next_basket(
    scores: Callable[[np.ndarray], np.ndarray],
    space: Space,
    history: pd.DataFrame,
    basket: pd.DataFrame,
) -> dict[str, float]:
    """training.evaluate.baskets' metrics: each user's top K over the whole catalog (bought
    items allowed) against the distinct items of their basket."""
    from training.evaluate.baskets import Relevant, score_baskets

    relevant = Relevant.of(history, basket)
    users = np.asarray(sorted(space.users[u] for u in relevant.users), dtype=np.int64)
    user_tokens = np.asarray(sorted(space.users, key=space.users.get))
    k = max(K_RECALL, K_NDCG)
    recommended: dict[str, list[str]] = {}
    for start in range(0, len(users), 256):
        rows = users[start : start + 256]
        s = np.asarray(scores(rows), dtype=np.float64)
        top = np.argsort(-s, axis=1, kind="stable")[:, :k]
        for row, items in zip(rows.tolist(), top, strict=True):
            recommended[str(user_tokens[row])] = space.item_ids[items].tolist()
    return score_baskets(recommended, relevant)


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


def run_implicit(name: str, task: Task) -> dict[str, Any]:
    space = task.space

    def fit(events: pd.DataFrame, params: dict[str, Any]) -> Any:
        model = _implicit_model(name, params)
        model.fit(space.matrix(events), show_progress=False)
        return model

    tuning = []
    for params in IMPLICIT_GRID[name]:
        valid = task.score_valid(_implicit_scores(fit(task.fit, params)))
        tuning.append({"params": params, "valid": valid})
    best = max(tuning, key=lambda t: t["valid"][task.tune_metric])
    model = fit(task.train, best["params"])
    test = task.score_test(_implicit_scores(model))
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
                "rating:float": frame["rating"].astype(float).fillna(1.0),
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


def _recbole_common(root: Path) -> dict[str, Any]:
    """The RecBole settings every run here shares: CPU, seeded, quiet, checkpoints under root."""
    return {
        "use_gpu": False,
        "device": "cpu",
        "seed": 0,
        "reproducibility": True,
        "show_progress": False,
        "checkpoint_dir": str(root / "saved"),
        "log_wandb": False,
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
            **_recbole_common(root),
            **params,
        },
    )
    torch.set_num_threads(int(os.environ.get("RECSERVE_TORCH_THREADS", "2")))
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


def run_recbole(model_name: str, task: Task, work: Path) -> dict[str, Any]:
    _compat_patches()
    space = task.space
    cwd = Path.cwd()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # RecBole writes log/ and saved/ under the working directory
    try:
        _write_atomic(work, "tune", {"train": task.fit, "valid": task.valid, "test": task.valid})
        tuning = []
        for params in RECBOLE_GRID[model_name]:
            model, dataset, epochs = _recbole_fit(model_name, params, work, "tune", 300, True)
            valid = task.score_valid(_recbole_scores(model, dataset, space))
            tuning.append({"params": {**params, "epochs": max(epochs, 1)}, "valid": valid})
        best = max(tuning, key=lambda t: t["valid"][task.tune_metric])
        params = {k: v for k, v in best["params"].items() if k != "epochs"}
        final = {"train": task.train, "valid": task.test, "test": task.test}
        _write_atomic(work, "final", final)
        epochs = best["params"]["epochs"]
        model, dataset, _ = _recbole_fit(model_name, params, work, "final", epochs, False)
        test = task.score_test(_recbole_scores(model, dataset, space))
    finally:
        os.chdir(cwd)
    return {"params": best["params"], "valid": best["valid"], "metrics": test,
            "n_configs_tried": len(tuning)}  # fmt: skip


# --- RecBole sequential models (SASRec, GRU4Rec) -----------------------------------------------

MAX_SEQ_LEN = 50
SEQ_GRID: dict[str, list[dict[str, Any]]] = {
    "SASRec": [
        {
            "hidden_size": 64,
            "inner_size": 256,
            "n_layers": 2,
            "n_heads": 2,
            "hidden_dropout_prob": d,
            "attn_dropout_prob": d,
            "learning_rate": 1e-3,
        }
        for d in (0.2, 0.5)
    ],
    "GRU4Rec": [
        {
            "embedding_size": 64,
            "hidden_size": 64,
            "num_layers": 1,
            "dropout_prob": 0.3,
            "learning_rate": lr,
        }
        for lr in (1e-3, 2e-3)
    ],
}


@dataclass(frozen=True)
class SeqBudget:
    """Training caps for the sequential models (2-core CPU): at most max_epochs (and
    max_seconds per run), stopping after `patience` epochs without a better validation score."""

    max_epochs: int = 30
    patience: int = 2
    max_seconds: float = 240.0
    batch_size: int = 32  # windows of MAX_SEQ_LEN items


SEQ_BUDGETS = {
    "movielens-100k": SeqBudget(max_epochs=30, patience=2, max_seconds=240.0),
    # 14k items make an epoch ~10x a MovieLens one: smaller batches, more updates per epoch.
    "instacart": SeqBudget(max_epochs=20, patience=2, max_seconds=240.0, batch_size=8),
}
FINAL_MAX_SECONDS = 400.0  # the refit on train stops here even before its epoch count


def time_ordered(events: pd.DataFrame) -> pd.DataFrame:
    """Events by user, then timestamp; ties keep the log's order (a stable sort, as RecBole's)."""
    frame = events.assign(_user=events["user_id"].astype(str), _pos=np.arange(len(events)))
    frame = frame.sort_values(["_user", "timestamp", "_pos"], kind="stable")
    return frame.drop(columns=["_user", "_pos"])


def user_sequences(events: pd.DataFrame, max_len: int = MAX_SEQ_LEN) -> dict[str, list[str]]:
    """Each user's last `max_len` items in time order (the model's input at prediction time)."""
    ordered = time_ordered(events)
    return {
        str(u): g.astype(str).tolist()[-max_len:]
        for u, g in ordered.groupby(ordered["user_id"].astype(str), sort=False)["item_id"]
    }


def _write_sequence_atomic(root: Path, name: str, events: pd.DataFrame) -> None:
    """One .inter file (time-ordered per user): RecBole reads it for its dataset, i.e. its
    user/item-id mapping and the item count the model is built with."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    ordered = time_ordered(events)
    pd.DataFrame(
        {
            "user_id:token": ordered["user_id"].astype(str),
            "item_id:token": ordered["item_id"].astype(str),
            "timestamp:float": ordered["timestamp"].astype(float),
        }
    ).to_csv(folder / f"{name}.inter", sep="\t", index=False)


def _seq_config(model_name: str, params: dict[str, Any], root: Path, name: str) -> Any:
    from recbole.config import Config

    return Config(
        model=model_name,
        dataset=name,
        config_dict={
            "data_path": str(root),
            "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "MAX_ITEM_LIST_LENGTH": MAX_SEQ_LEN,
            "loss_type": "CE",
            "train_neg_sample_args": None,
            **_recbole_common(root),
            **params,
        },
    )


def _seq_scores(
    model: Any, dataset: Any, space: Space, sequences: dict[str, list[str]]
) -> Callable[[np.ndarray], np.ndarray]:
    """scores(user rows) for a RecBole sequential model: each user's item sequence (our ids ->
    RecBole's internal ids, left-aligned and 0-padded as SequentialDataset builds them) through
    full_sort_predict; RecBole's item columns mapped back to ours (items RecBole never saw in
    training: -1e9)."""
    import torch
    from recbole.data.interaction import Interaction

    user_tokens = np.asarray(sorted(space.users, key=space.users.get))
    item_rows = np.asarray([space.items[t] for t in dataset.field2id_token["item_id"][1:]])
    known = set(dataset.field2id_token["item_id"][1:].tolist())

    def encode(user: str) -> list[int]:
        seq = [t for t in sequences.get(user, []) if t in known][-MAX_SEQ_LEN:]
        return dataset.token2id("item_id", seq).tolist() if seq else []

    def scores(rows: np.ndarray) -> np.ndarray:
        encoded = [encode(str(user_tokens[r])) for r in rows]
        item_seq = torch.zeros((len(rows), MAX_SEQ_LEN), dtype=torch.long)
        for i, seq in enumerate(encoded):
            item_seq[i, : len(seq)] = torch.as_tensor(seq, dtype=torch.long)
        # A user without history reads the padding item (length 1): a history-free answer.
        length = torch.as_tensor([max(len(seq), 1) for seq in encoded], dtype=torch.long)
        model.eval()
        with torch.no_grad():
            s = model.full_sort_predict(
                Interaction({model.ITEM_SEQ: item_seq, model.ITEM_SEQ_LEN: length})
            )
        s = s.view(len(rows), -1).numpy()[:, 1:]  # column 0 is RecBole's padding item
        out = np.full((len(rows), len(space.items)), -1e9, dtype=np.float64)
        out[:, item_rows] = s
        return out

    return scores


def training_windows(
    sequences: list[list[int]], max_len: int = MAX_SEQ_LEN
) -> tuple[np.ndarray, np.ndarray]:
    """Each user's item sequence (RecBole ids) cut into windows of max_len inputs, each input
    position's target the next item: -> (inputs, targets) int64[N, max_len], left-aligned and
    0-padded (RecBole's layout). Every item after a user's first is a target exactly once."""
    inputs, targets = [], []
    for seq in sequences:
        for lo in range(0, len(seq) - 1, max_len):
            y = seq[lo + 1 : lo + 1 + max_len]
            x = seq[lo : lo + len(y)]
            inputs.append(x + [0] * (max_len - len(x)))
            targets.append(y + [0] * (max_len - len(y)))
    shape = (len(inputs), max_len)
    return (np.asarray(inputs, dtype=np.int64).reshape(shape),
            np.asarray(targets, dtype=np.int64).reshape(shape))  # fmt: skip


def all_positions(model: Any, item_seq: Any) -> Any:
    """The sequence representation at every position, float[B, L, H]: the layers of RecBole's
    SASRec.forward / GRU4Rec.forward without the final gather of the last position (SASRec's
    attention mask is causal, GRU4Rec is a left-to-right GRU: position t sees items <= t)."""
    import torch

    if type(model).__name__ == "SASRec":
        positions = torch.arange(item_seq.size(1), dtype=torch.long).expand_as(item_seq)
        emb = model.item_embedding(item_seq) + model.position_embedding(positions)
        emb = model.dropout(model.LayerNorm(emb))
        mask = model.get_attention_mask(item_seq)
        return model.trm_encoder(emb, mask, output_all_encoded_layers=True)[-1]
    if type(model).__name__ == "GRU4Rec":
        out, _ = model.gru_layers(model.emb_dropout(model.item_embedding(item_seq)))
        return model.dense(out)
    raise ValueError(f"no all-position forward for {type(model).__name__}")


def _seq_train(
    model_name: str,
    params: dict[str, Any],
    root: Path,
    name: str,
    events: pd.DataFrame,
    budget: SeqBudget,
    epochs: int,
    validate: Callable[[Any, Any], float] | None,
) -> tuple[Any, Any, int, list[float]]:
    """Train a RecBole sequential model (built on RecBole's dataset of root/name/name.inter, so
    its item-id mapping is RecBole's) on the time-ordered item sequences of `events`.

    The loop is ours, not RecBole's Trainer: RecBole feeds one (prefix -> next item) row per
    training event, i.e. up to MAX_SEQ_LEN encoder positions for one loss term, which is ~50x
    too slow on a 2-core CPU. Instead each window of MAX_SEQ_LEN items is encoded once and the
    cross-entropy over all items is taken at every position (the objective of the SASRec paper
    and GRU4Rec's); the model, its CE head (item_embedding.weight) and full_sort_predict are
    RecBole's. Adam, shuffled mini-batches of budget.batch_size windows. validate(model,
    dataset) -> score after each epoch: the best epoch's weights are kept and training stops
    after budget.patience epochs without improvement. -> (model, dataset, best epoch, curve)."""
    import torch
    import torch.nn.functional as F
    from recbole.data import create_dataset
    from recbole.utils import get_model, init_seed

    config = _seq_config(model_name, params, root, name)
    torch.set_num_threads(int(os.environ.get("RECSERVE_TORCH_THREADS", "2")))
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)  # no build(): RecBole's own split/augmentation unused
    init_seed(config["seed"], config["reproducibility"])
    model = get_model(config["model"])(config, dataset).to("cpu")
    optimizer = torch.optim.Adam(model.parameters(), lr=params["learning_rate"])
    seqs = user_sequences(events, max_len=1 << 30)
    inputs, targets = map(torch.as_tensor, training_windows(
        [dataset.token2id("item_id", s).tolist() for s in seqs.values()]))  # fmt: skip
    print(f"[{model_name}] {name}: {len(inputs)} windows, {int((targets > 0).sum())} targets, "
          f"{dataset.item_num} items ({json.dumps(params)})", flush=True)  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    curve: list[float] = []
    best_epoch, best_state = 0, None
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(inputs), generator=generator)
        for lo in range(0, len(order), budget.batch_size):
            batch = order[lo : lo + budget.batch_size]
            x, y = inputs[batch], targets[batch]
            hidden = all_positions(model, x)[y > 0]
            logits = hidden @ model.item_embedding.weight.T
            loss = F.cross_entropy(logits, y[y > 0])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if validate is None:
            best_epoch = epoch
        else:
            curve.append(validate(model, dataset))
            print(f"[{model_name}] {name} epoch {epoch}: valid {curve[-1]:.4f} "
                  f"({time.perf_counter() - start:.0f} s)", flush=True)  # fmt: skip
            if curve[-1] > max(curve[:-1], default=-np.inf):
                best_epoch = epoch
                best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            if epoch - best_epoch >= budget.patience:
                break
        if time.perf_counter() - start > budget.max_seconds:
            break
    if best_state is not None:
        model.load_state_dict(best_state)
    return model, dataset, best_epoch, curve


def run_sequential(model_name: str, task: Task, work: Path) -> dict[str, Any]:
    """SASRec / GRU4Rec (RecBole, CE loss) on the task's split: each grid point trained on
    `fit` with early stopping on `valid` (the input sequence: the user's `fit` items in time
    order); the best refit on `train` for its best epoch count, tested with `train` sequences."""
    _compat_patches()
    budget = SEQ_BUDGETS.get(task.dataset, SeqBudget())
    space = task.space
    cwd = Path.cwd()
    work.mkdir(parents=True, exist_ok=True)
    os.chdir(work)  # RecBole writes log/ under the working directory
    try:
        _write_sequence_atomic(work, "tune", task.fit)
        fit_seqs = user_sequences(task.fit)
        valid_runs: list[dict[str, Any]] = []

        def validate(model: Any, dataset: Any) -> float:
            valid_runs.append(task.score_valid(_seq_scores(model, dataset, space, fit_seqs)))
            return valid_runs[-1][task.tune_metric]

        tuning = []
        for params in SEQ_GRID[model_name]:
            valid_runs.clear()
            t = time.perf_counter()
            _, _, epochs, curve = _seq_train(model_name, params, work, "tune", task.fit,
                                             budget, budget.max_epochs, validate)  # fmt: skip
            tuning.append({"params": {**params, "epochs": max(epochs, 1)},
                           "valid": valid_runs[max(epochs, 1) - 1],
                           "valid_curve": [round(c, 4) for c in curve],
                           "seconds": round(time.perf_counter() - t, 1)})  # fmt: skip
        best = max(tuning, key=lambda r: r["valid"][task.tune_metric])
        params = {k: v for k, v in best["params"].items() if k != "epochs"}
        _write_sequence_atomic(work, "final", task.train)
        final_budget = SeqBudget(**{**budget.__dict__, "max_seconds": FINAL_MAX_SECONDS})
        model, dataset, final_epochs, _ = _seq_train(model_name, params, work, "final", task.train,
                                          final_budget, best["params"]["epochs"], None)  # fmt: skip
        test = task.score_test(_seq_scores(model, dataset, space, user_sequences(task.train)))
    finally:
        os.chdir(cwd)
    return {"params": {**best["params"], "MAX_ITEM_LIST_LENGTH": MAX_SEQ_LEN, "loss_type": "CE",
                       "budget": budget.__dict__,
                       "batch_windows": budget.batch_size,
                       "training": "all-position CE over windows (see _seq_train)",
                       "final_epochs": final_epochs},
            "valid": best["valid"], "metrics": test, "n_configs_tried": len(tuning),
            "tuning": tuning}  # fmt: skip


# --- main --------------------------------------------------------------------------------------


def _versions(package: str) -> str:
    try:
        return version(package)
    except Exception:  # not installed
        return "not installed"


RECBOLE_MODELS = ("BPR", "LightGCN", "SASRec", "GRU4Rec")
SEQUENTIAL = ("SASRec", "GRU4Rec")


def default_out(data: str) -> Path:
    """MovieLens keeps reports/external_baselines.json; other datasets get their own file."""
    if data == "movielens":
        return Path("reports/external_baselines.json")
    return Path(f"reports/external_baselines_{data}.json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.external.baselines")
    parser.add_argument("--data-dir", type=Path, default=Path("data"))
    parser.add_argument("--data", default="movielens",
                        help="movielens (top-K, temporal 80/20) or a next-basket dataset such "
                        "as instacart (the split of `make eval DATA=instacart`)")  # fmt: skip
    parser.add_argument("--out", type=Path, help="default: default_out(--data)")
    parser.add_argument("--work", type=Path, default=Path("runs/external"))
    parser.add_argument("--only", default="implicit,surprise,recbole",
                        help="comma-separated libraries to run")  # fmt: skip
    parser.add_argument(
        "--models", default="", help="comma-separated model names to run (default: all of --only)"
    )
    parser.add_argument(
        "--seq-max-seconds", type=float, help="override SEQ_BUDGETS' seconds per grid point"
    )
    args = parser.parse_args(argv)
    out: Path = args.out or default_out(args.data)
    if args.seq_max_seconds is not None:
        for key, budget in SEQ_BUDGETS.items():
            SEQ_BUDGETS[key] = SeqBudget(**{**budget.__dict__, "max_seconds": args.seq_max_seconds})
    command = "python -m training.external.baselines " + shlex.join(
        sys.argv[1:] if argv is None else argv
    )
    libraries = set(args.only.split(","))
    wanted = set(filter(None, args.models.split(",")))

    def keep(name: str) -> bool:
        return not wanted or name in wanted

    if args.data == "movielens":
        task, movielens = movielens_task(args.data_dir)
    else:
        task, movielens = basket_task(args.data_dir, args.data), None
    work = args.work / task.dataset
    jobs: list[tuple[str, str, str, Callable[[], dict[str, Any]]]] = []
    if "implicit" in libraries:
        for name in filter(keep, ("ALS", "BPR")):
            jobs.append(("implicit", name, task.protocol,
                         lambda n=name: run_implicit(n, task)))  # fmt: skip
    if "recbole" in libraries:
        for name in filter(keep, RECBOLE_MODELS):
            run = run_sequential if name in SEQUENTIAL else run_recbole
            jobs.append(("recbole", name, task.protocol,
                         lambda n=name, r=run: r(n, task, work / n)))  # fmt: skip
    if "surprise" in libraries and movielens is not None:  # ratings: MovieLens only
        folds = rating_folds(movielens.events)
        for name in filter(keep, ("SVD", "SVD++")):
            jobs.append(("scikit-surprise", name, RATING_PROTOCOL,
                         lambda n=name: run_surprise(n, folds)))  # fmt: skip
    for library, model, protocol, job in jobs:
        start = time.perf_counter()
        outcome = job()
        seconds = round(time.perf_counter() - start, 1)
        # Read the file again just before writing: another run may have added entries since.
        previous = json.loads(out.read_text()) if out.exists() else []
        results = {(r["library"], r["model"]): r for r in previous}
        results[(library, model)] = {
            "library": library,
            "version": _versions(library),
            "model": model,
            "dataset": task.dataset,
            "protocol": protocol,
            **outcome,
            "seconds": seconds,
            "command": command,
        }
        print(json.dumps({"library": library, "model": model, **outcome["metrics"],
                          "seconds": seconds}), flush=True)  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(list(results.values()), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
