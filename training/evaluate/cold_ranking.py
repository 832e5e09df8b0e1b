"""Cold items in the ranker: scored as their proxy (the old serving) or by their own features.

Part of the cold-item protocol (training.evaluate.cold_items, docs/evaluation.md): the same
cold items, users, relevant test interactions, warm-only two-tower and text -> tower projection.
A ranker is trained with the code path of the bundle (training.steps.ranker.train_ranker) on
the same cold-removed training events; the cold items are never drawn as its hard negatives
either (they do not exist at training time). Each cold item is then scored in two ways:

    proxy          as its nearest trained item (max inner product of its content vector over
                   the warm items' tower vectors, services.retrieval.added): the proxy's id,
                   tags, attributes and tower vector (the serving behaviour before schema 2)
    own_features   as an item added at runtime (serving, schema_version 2): a row past the
                   trained tables (unknown id, row 0 of the id embedding and item bias), its own
                   tags, attributes unknown (an added item carries none) and its content vector
                   as item_vectors, gathered by services.contract.item_table.ItemTable
    own_features_with_attributes   the same with the item's own attribute codes (year):
                   what an added item with declared attributes would get

Warm items are scored identically in every arm (their own rows). Candidates, for each user
with a relevant cold item, everything ordered by the ranker's p_interact (what serving orders
by), items the user interacted with in training (cold ones included) excluded:

    cold_only   the cold items: AUC (relevant cold items vs the other cold items, per user,
                averaged), Recall@20, NDCG@10
    all_items   every item: AUC and Recall@100 of the relevant cold items (against every
                non-relevant candidate), cold items per top-100 list, and Recall@20 / NDCG@10
                of the same users' warm test items in those lists (what cold items cost them)
    warm_only   the warm items only: AUC, Recall@20, NDCG@10 of the warm test items; the
                sanity check, equal in every arm (no warm score changes)

Each own-features arm is compared with the proxy per user on the cold metrics: the mean
difference and a 95% paired bootstrap interval over users (not over trainings: one seed).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
import torch

from services.contract.item_table import ItemTable
from training.encode import EncodedCatalog
from training.evaluate import metrics as M
from training.models import TwoTower
from training.models.train import Batch, history_events, latest_history_events
from training.steps.config import TrainConfig
from training.steps.ranker import train_ranker

ARMS = ("proxy", "own_features", "own_features_with_attributes")
ALL_ITEMS_K = 100
USER_BATCH = 16
BOOTSTRAP = 2000  # paired bootstrap resamples of users (own features vs proxy)


def proxy_rows(content: np.ndarray, item_vectors: np.ndarray, warm: np.ndarray) -> np.ndarray:
    """content float32[C, D] (cold items' content vectors), item_vectors float32[I, D], warm
    int64[W] trained rows -> int64[C]: each cold item's proxy, the warm row of maximum inner
    product (the rule of services.retrieval.added.AddedItems.proxies)."""
    return warm[np.argmax(content @ item_vectors[warm].T, axis=1)]


def _arm_features(
    catalog: EncodedCatalog,
    item_vectors: np.ndarray,
    cold: np.ndarray,
    content: np.ndarray,
    cold_tags: Sequence[Sequence[str]],
    proxy: np.ndarray,
) -> dict[str, tuple[np.ndarray, dict[str, np.ndarray]]]:
    """arm -> (rows int64[I-1] fed as `items` for catalog rows 1..I-1, their features
    item_tags float32[I-1, T], item_attrs int64[I-1, A], item_vectors float32[I-1, D])."""
    n = catalog.n_items
    base = ItemTable(catalog.item_tags.astype(bool), catalog.item_attrs, item_vectors, catalog.spec)
    added_rows = n + np.arange(len(cold), dtype=np.int64)  # rows past the trained tables
    table = base.with_added(added_rows, cold_tags, content)  # serving's added-item rows
    catalog_rows = np.arange(1, n, dtype=np.int64)
    at = cold - 1  # the cold items' positions among catalog_rows
    out = {}
    for arm in ARMS:
        rows = catalog_rows.copy()
        rows[at] = proxy if arm == "proxy" else added_rows
        feats = {
            "item_tags": table.tags_of(rows),
            "item_attrs": table.attrs_of(rows).copy(),
            "item_vectors": table.vectors_of(rows).copy(),
        }
        if arm == "own_features_with_attributes":
            feats["item_attrs"][at] = catalog.item_attrs[cold]
        out[arm] = (rows, feats)
    return out


def _scores(
    ranker: torch.nn.Module,
    catalog: EncodedCatalog,
    users: np.ndarray,
    histories: dict[str, np.ndarray],
    rows: np.ndarray,
    feats: Mapping[str, np.ndarray],
) -> np.ndarray:
    """p_interact float64[U, I] of every catalog row (column 0, padding: -inf). histories:
    every user row's latest history and its events (latest_history_events)."""
    out = np.full((len(users), catalog.n_items), -np.inf)
    items = torch.from_numpy(rows).unsqueeze(0)
    tensors = {k: torch.from_numpy(np.ascontiguousarray(v)).unsqueeze(0) for k, v in feats.items()}
    ranker.eval()
    with torch.no_grad():
        for start in range(0, len(users), USER_BATCH):
            batch = users[start : start + USER_BATCH]
            b = len(batch)
            _, _, p_interact = ranker(
                torch.from_numpy(batch),
                torch.from_numpy(catalog.user_profiles[batch]),
                torch.from_numpy(histories["history"][batch]),
                items.expand(b, -1),
                item_tags=tensors["item_tags"].expand(b, -1, -1),
                item_attrs=tensors["item_attrs"].expand(b, -1, -1),
                item_vectors=tensors["item_vectors"].expand(b, -1, -1),
                **history_events({k: v[batch] for k, v in histories.items()}),
            )
            out[start : start + b, 1:] = p_interact.numpy()
    return out


def _top(scores: np.ndarray, columns: np.ndarray, k: int) -> list[list[int]]:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return [[int(columns[j]) for j in row] for row in np.take_along_axis(part, order, 1)]


def _user_auc(scores: np.ndarray, columns: np.ndarray, positives: Sequence[set[int]]) -> np.ndarray:
    """float[U]: per user, the AUC of the positive columns vs the other finite-scored columns
    (NaN without both classes)."""
    out = np.full(len(scores), np.nan)
    for i, (row, pos) in enumerate(zip(scores, positives, strict=True)):
        ok = np.isfinite(row)
        out[i] = M.auc(np.isin(columns[ok], list(pos)), row[ok])
    return out


def _user_recall_ndcg(
    lists: Mapping[int, Sequence[int]],
    relevant: Mapping[int, set[int]],
    users: Sequence[int],
    recall_k: int,
    ndcg_k: int,
) -> tuple[np.ndarray, np.ndarray]:
    """Per user (in `users` order, each with a relevant item): Recall@recall_k, NDCG@ndcg_k,
    by the formulas of training.evaluate.metrics (their means are recall_at_k / ndcg_at_k)."""
    ordered = {u: relevant[u] for u in users}
    hits, n_rel = M.hit_matrix(lists, ordered, recall_k)
    recall = hits.sum(axis=1) / np.maximum(n_rel, 1)
    hits, n_rel = M.hit_matrix(lists, ordered, ndcg_k)
    disc = 1.0 / np.log2(np.arange(2, ndcg_k + 2))
    ndcg = (hits @ disc) / np.cumsum(disc)[np.minimum(n_rel, ndcg_k) - 1]
    return recall, ndcg


def _metrics(
    scores: np.ndarray,
    users: np.ndarray,
    cold: np.ndarray,
    relevant_cold: Mapping[int, set[int]],
    relevant_warm: Mapping[int, set[int]],
) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """-> ({part: {metric: mean over users}}, {"part/metric": per-user values} of the cold
    metrics, for the paired comparison of arms)."""
    n_items = scores.shape[1]
    all_rows = np.arange(n_items)
    user_ids = [int(u) for u in users]
    cold_pos = [relevant_cold[u] for u in user_ids]
    per_user: dict[str, np.ndarray] = {}
    lists = _top(scores[:, cold], cold, 20)
    cold_lists = dict(zip(user_ids, lists, strict=True))
    per_user["cold_only/auc"] = _user_auc(scores[:, cold], cold, cold_pos)
    per_user["cold_only/recall@20"], per_user["cold_only/ndcg@10"] = _user_recall_ndcg(
        cold_lists, relevant_cold, user_ids, 20, 10
    )
    lists = _top(scores, all_rows, ALL_ITEMS_K)
    top = dict(zip(user_ids, lists, strict=True))
    is_cold = np.zeros(n_items, dtype=bool)
    is_cold[cold] = True
    # cold AUC against the non-relevant candidates: the user's relevant warm items left out
    no_warm = scores.copy()
    for i, u in enumerate(user_ids):
        no_warm[i, list(relevant_warm.get(u, ()))] = -np.inf
    per_user["all_items/cold_auc"] = _user_auc(no_warm, all_rows, cold_pos)
    per_user[f"all_items/cold_recall@{ALL_ITEMS_K}"], _ = _user_recall_ndcg(
        top, relevant_cold, user_ids, ALL_ITEMS_K, 10
    )
    warm_users = [u for u in user_ids if relevant_warm.get(u)]
    warm_rel = {u: relevant_warm[u] for u in warm_users}
    means = {k: float(np.nanmean(v)) if len(v) else float("nan") for k, v in per_user.items()}
    cold_only = {m: means[f"cold_only/{m}"] for m in ("auc", "recall@20", "ndcg@10")}
    all_items = {
        "cold_auc": means["all_items/cold_auc"],
        f"cold_recall@{ALL_ITEMS_K}": means[f"all_items/cold_recall@{ALL_ITEMS_K}"],
        f"cold_in_top{ALL_ITEMS_K}": float(
            np.mean([is_cold[row[:ALL_ITEMS_K]].sum() for row in top.values()])
        ),
        "warm_recall@20": M.recall_at_k(top, warm_rel, 20),
        "warm_ndcg@10": M.ndcg_at_k(top, warm_rel, 10),
    }
    # the sanity check: warm candidates only, whose scores no arm changes
    warm_cols = np.flatnonzero(~is_cold & (all_rows > 0))
    at = np.flatnonzero(np.isin(users, warm_users))
    lists = _top(scores[at][:, warm_cols], warm_cols, 20)
    warm_lists = dict(zip(warm_users, lists, strict=True))
    warm_auc = _user_auc(scores[at][:, warm_cols], warm_cols, [warm_rel[u] for u in warm_users])
    warm_only = {
        "auc": float(np.nanmean(warm_auc)) if len(warm_auc) else float("nan"),
        "recall@20": M.recall_at_k(warm_lists, warm_rel, 20),
        "ndcg@10": M.ndcg_at_k(warm_lists, warm_rel, 10),
    }
    return {"cold_only": cold_only, "all_items": all_items, "warm_only": warm_only}, per_user


def paired_difference(
    a: np.ndarray, b: np.ndarray, seed: int, n_boot: int = BOOTSTRAP
) -> dict[str, Any]:
    """Per-user values of two arms (NaN pairs dropped) -> mean of b - a, a 95% paired bootstrap
    interval over users (seeded), and the users b wins / ties / loses."""
    ok = ~(np.isnan(a) | np.isnan(b))
    diff = b[ok] - a[ok]
    if not diff.size:
        return {"delta": float("nan"), "ci95": [float("nan")] * 2, "n_users": 0}
    rng = np.random.default_rng(seed)
    boot = diff[rng.integers(0, diff.size, size=(n_boot, diff.size))].mean(axis=1)
    return {
        "delta": float(diff.mean()),
        "ci95": [float(np.quantile(boot, 0.025)), float(np.quantile(boot, 0.975))],
        "n_users": int(diff.size),
        "better": int((diff > 0).sum()),
        "equal": int((diff == 0).sum()),
        "worse": int((diff < 0).sum()),
    }


def evaluate_cold_ranking(
    cfg: TrainConfig,
    catalog: EncodedCatalog,
    warm_ix: pd.DataFrame,
    examples: Batch,
    two_tower: TwoTower,
    item_vectors: np.ndarray,
    cold: np.ndarray,
    content: np.ndarray,
    cold_tags: Sequence[Sequence[str]],
    users: np.ndarray,
    relevant_cold: Mapping[int, set[int]],
    relevant_warm: Mapping[int, set[int]],
    seen: Mapping[int, set[int]],
) -> dict[str, Any]:
    """The ranking part of the cold-item protocol (module docstring).

    warm_ix/examples: the cold-removed training events; two_tower/item_vectors: the two-tower
    trained on them and its item vectors float32[I, D]; cold int64[C] rows, content float32[C, D]
    their content vectors, cold_tags their raw tag lists; users int64[U] (each with a relevant
    cold item), relevant_cold / relevant_warm: user -> relevant test rows; seen: user -> rows
    interacted with in training (cold ones included), never candidates.
    -> {"arms": {arm: {"cold_only", "all_items", "warm_only": {metric: value}}},
    "versus_proxy": {arm: {"part/metric": paired_difference}} of the cold metrics, counts,
    checks, seconds}."""
    start = time.perf_counter()
    torch.manual_seed(cfg.seed)
    ranker, info = train_ranker(
        cfg, catalog, warm_ix, examples, two_tower, item_vectors, exclude_items=cold
    )
    trained = time.perf_counter() - start
    warm = np.setdiff1d(np.arange(1, catalog.n_items), cold)
    proxy = proxy_rows(content, item_vectors, warm)
    histories = latest_history_events(catalog, warm_ix)  # history, history_age, history_kind
    arms = _arm_features(catalog, item_vectors, cold, content, cold_tags, proxy)
    results: dict[str, Any] = {}
    warm_cols = np.ones(catalog.n_items, dtype=bool)
    warm_cols[cold] = False
    warm_cols[0] = False
    reference = None
    identical = True
    per_user: dict[str, dict[str, np.ndarray]] = {}
    for arm in ARMS:
        scores = _scores(ranker, catalog, users, histories, *arms[arm])
        if reference is None:
            reference = scores[:, warm_cols]
        else:
            identical &= bool(np.allclose(reference, scores[:, warm_cols], rtol=0, atol=1e-6))
        for i, u in enumerate(users):
            scores[i, list(seen.get(int(u), ()))] = -np.inf
        results[arm], per_user[arm] = _metrics(scores, users, cold, relevant_cold, relevant_warm)
    same_tags = (catalog.item_tags[proxy] == catalog.item_tags[cold]).all(axis=1)
    versus_proxy = {
        arm: {
            metric: paired_difference(per_user["proxy"][metric], values, cfg.seed)
            for metric, values in per_user[arm].items()
        }
        for arm in ARMS[1:]
    }
    return {
        "arms": results,
        "versus_proxy": versus_proxy,
        "score": "p_interact",
        "ranker_epochs": cfg.ranker_epochs,
        "ranker_uses_retrieval_score": bool(info["uses_retrieval_score"]),
        "n_users": len(users),
        "n_warm_users": int(sum(1 for u in users if relevant_warm.get(int(u)))),
        "n_warm_test_interactions": int(sum(len(relevant_warm.get(int(u), ())) for u in users)),
        "proxy_same_tags": float(same_tags.mean()),
        "warm_scores_identical": identical,
        "ranker_seconds": round(trained, 1),
        "seconds": round(time.perf_counter() - start, 1),
    }
