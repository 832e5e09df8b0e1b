"""Cold items: can an item nobody has interacted with be retrieved from its text alone?

Protocol (docs/evaluation.md). A seeded random 10% of the catalog is "cold": every training
interaction with those items is removed. The two-tower model (the bundle's configuration) is
trained on the rest; the text -> tower projection (training.content) is fitted on the warm
items only; the cold items are embedded from their text. Test interactions with a cold item
(not in the user's training history) are the relevant set, and each system ranks:

    (a) cold items only        Recall@20, NDCG@10 of the true cold item
    (b) every item the user has not seen, warm items by their tower embedding and cold ones by
        the system's cold embedding: Recall@100 of the cold item, and the mean number of cold
        items in a top-100 list (can cold items surface at all, next to trained ones?)

Systems: content (text -> tower projection), the item tower itself on the cold rows (genre +
year features with an id embedding that never trained), genre match (the user's training
genre profile · the item's genres), random, and an upper bound: a second two-tower trained
with the cold items' interactions kept, ranked by their true tower embeddings.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import torch

from training.content import (
    TEXT_DIM,
    TextModel,
    catalog_texts,
    fit_projection,
    popularity_weights,
)
from training.data import InteractionData
from training.encode import EncodedCatalog, build_catalog, index_events
from training.evaluate import metrics as M
from training.evaluate.cold_ranking import evaluate_cold_ranking
from training.models import TwoTower
from training.models.train import Batch, history_events, latest_history_events, make_examples
from training.steps.config import TrainConfig
from training.steps.two_tower import train_two_tower

COLD_FRACTION = 0.1
CUTOFFS = {"recall@20": 20, "ndcg@10": 10}
ALL_ITEMS_K = 100
SYSTEMS = ("content", "item_tower_side_features", "genre_match", "random", "upper_bound")


def cold_rows(n_items: int, fraction: float, seed: int) -> np.ndarray:
    """Sorted catalog rows (1..n_items-1) drawn as cold, seeded."""
    rng = np.random.default_rng(seed)
    n = max(1, round(fraction * (n_items - 1)))
    return np.sort(rng.choice(np.arange(1, n_items), size=n, replace=False))


def _tower(
    cfg: TrainConfig, catalog: EncodedCatalog, train_ix: pd.DataFrame, users: np.ndarray
) -> tuple[np.ndarray, np.ndarray, TwoTower, Batch]:
    """Train a two-tower on train_ix -> (item embeddings [I, D], user queries [U, D], the
    model, its training examples)."""
    examples = make_examples(catalog, train_ix)
    model, _ = train_two_tower(cfg, catalog, train_ix, examples)
    items = model.item_embeddings(catalog.n_items)
    latest = {k: v[users] for k, v in latest_history_events(catalog, train_ix).items()}
    model.user_tower.eval()
    with torch.no_grad():
        queries = model.user_tower(
            torch.from_numpy(users),
            torch.from_numpy(catalog.user_profiles[users]),
            torch.from_numpy(latest["history"]),
            **history_events(latest),
        ).numpy()
    return items, queries, model, examples


def _top(scores: np.ndarray, k: int) -> list[list[int]]:
    k = min(k, scores.shape[1])
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.argsort(-np.take_along_axis(scores, part, 1), axis=1, kind="stable")
    return np.take_along_axis(part, order, 1).tolist()


def _score(scores: np.ndarray, columns: np.ndarray, users: np.ndarray) -> dict[int, list[int]]:
    """Per-user top lists of item rows (columns maps score columns to rows)."""
    top = _top(scores, max(max(CUTOFFS.values()), ALL_ITEMS_K))
    return {int(u): [int(columns[j]) for j in row] for u, row in zip(users, top, strict=True)}


def _genre_profiles(catalog: EncodedCatalog, train_ix: pd.DataFrame, users: np.ndarray):
    """Users' share of training interactions per genre [U, T] and unit genre rows [I, T]."""
    counts = np.zeros((catalog.n_users, catalog.item_tags.shape[1]))
    np.add.at(counts, train_ix["user_index"].to_numpy(), catalog.item_tags[train_ix["item_index"]])
    profile = counts[users] / np.maximum(counts[users].sum(1, keepdims=True), 1.0)
    norms = np.linalg.norm(catalog.item_tags, axis=1, keepdims=True)
    return profile, catalog.item_tags / np.maximum(norms, 1e-12)


def evaluate_cold_items(
    train: pd.DataFrame,
    test: pd.DataFrame,
    data: InteractionData,
    *,
    seed: int = 0,
    fraction: float = COLD_FRACTION,
    tiny: bool = False,
    max_fit_items: int | None = None,
    ranking: bool = True,
) -> dict[str, Any]:
    """train/test: canonical events. -> {"cold_only": {system: metrics}, "all_items": {...},
    counts, projection quality, seconds, and with `ranking` "ranking": the ranker's scores of
    the cold items as proxies vs by their own features (training.evaluate.cold_ranking)}.
    tiny: the tiny training preset (tests)."""
    start = time.perf_counter()
    torch.manual_seed(seed)
    cfg = TrainConfig(tiny=tiny, progress=False, seed=seed).resolved()
    catalog = build_catalog(data, cfg.history_len)
    cold = cold_rows(catalog.n_items, fraction, seed)
    cold_ids = set(catalog.items.ids[cold - 1].tolist())
    full_ix = index_events(catalog, train)
    removed = train["item_id"].astype(str).isin(cold_ids).to_numpy()
    warm_ix = index_events(catalog, train[~removed])
    test_ix = index_events(catalog, test)
    seen_full = full_ix.groupby("user_index")["item_index"].apply(set).to_dict()
    is_cold = np.zeros(catalog.n_items, dtype=bool)
    is_cold[cold] = True
    relevant: dict[int, set[int]] = {}
    for user, items in test_ix[is_cold[test_ix["item_index"]]].groupby("user_index"):
        rel = set(items["item_index"].tolist()) - seen_full.get(user, set())
        if rel:
            relevant[int(user)] = rel
    users = np.asarray(sorted(relevant), dtype=np.int64)

    warm_items, warm_queries, warm_model, warm_examples = _tower(cfg, catalog, warm_ix, users)
    full_items, full_queries, _, _ = _tower(cfg, catalog, full_ix, users)
    popularity = np.bincount(warm_ix["item_index"], minlength=catalog.n_items)
    weights = popularity_weights(popularity)
    weights[0] = 0.0
    embed = np.flatnonzero(is_cold | (weights > 0))
    if max_fit_items is not None:  # tests: the most popular warm items only
        warm = np.flatnonzero(weights > 0)
        warm = warm[np.argsort(-weights[warm], kind="stable")[:max_fit_items]]
        embed = np.union1d(warm, cold)
        weights = np.where(np.isin(np.arange(len(weights)), warm), weights, 0.0)
    table = data.items.assign(item_id=data.items["item_id"].astype(str)).set_index("item_id")
    table = table.reindex(catalog.items.ids[embed - 1].tolist()).reset_index()
    text = np.zeros((catalog.n_items, TEXT_DIM), dtype=np.float32)
    text[embed] = TextModel.load().embed(catalog_texts(table))
    projection, quality = fit_projection(text, warm_items, weights, seed)
    content = projection(text[cold])
    genre_user, genre_item = _genre_profiles(catalog, warm_ix, users)
    rng = np.random.default_rng(seed + 1)

    cold_scores = {
        "content": warm_queries @ content.T,
        "item_tower_side_features": warm_queries @ warm_items[cold].T,
        "genre_match": genre_user @ genre_item[cold].T,
        "random": rng.random((len(users), len(cold))),
        "upper_bound": full_queries @ full_items[cold].T,
    }
    mixed_content = warm_items.copy()
    mixed_content[cold] = content
    all_scores = {
        "content": warm_queries @ mixed_content.T,
        "item_tower_side_features": warm_queries @ warm_items.T,
        "genre_match": genre_user @ genre_item.T,
        "random": rng.random((len(users), catalog.n_items)),
        "upper_bound": full_queries @ full_items.T,
    }
    seen_warm = warm_ix.groupby("user_index")["item_index"].apply(list).to_dict()
    for name, scores in all_scores.items():
        seen = seen_full if name == "upper_bound" else seen_warm
        scores[:, 0] = -np.inf
        for row, user in enumerate(users):
            scores[row, list(seen.get(int(user), ()))] = -np.inf
    for row, user in enumerate(users):  # with the cold interactions kept, some were seen
        seen_cold = np.isin(cold, list(seen_full.get(int(user), ())))
        cold_scores["upper_bound"][row, seen_cold] = -np.inf

    out: dict[str, Any] = {"cold_only": {}, "all_items": {}}
    for name in SYSTEMS:
        lists = _score(cold_scores[name], cold, users)
        out["cold_only"][name] = {
            "recall@20": M.recall_at_k(lists, relevant, 20),
            "ndcg@10": M.ndcg_at_k(lists, relevant, 10),
        }
        lists = _score(all_scores[name], np.arange(catalog.n_items), users)
        out["all_items"][name] = {
            f"recall@{ALL_ITEMS_K}": M.recall_at_k(lists, relevant, ALL_ITEMS_K),
            f"cold_in_top{ALL_ITEMS_K}": float(
                np.mean([is_cold[row[:ALL_ITEMS_K]].sum() for row in lists.values()])
            ),
        }
    if ranking:
        relevant_warm: dict[int, set[int]] = {}
        in_users = test_ix["user_index"].isin(set(users.tolist())).to_numpy()
        rows = test_ix["item_index"].to_numpy()
        warm_test = test_ix[in_users & ~is_cold[rows] & (rows > 0)]
        for user, items in warm_test.groupby("user_index"):
            rel = set(items["item_index"].tolist()) - seen_full.get(user, set())
            if rel:
                relevant_warm[int(user)] = rel
        by_id = data.items.assign(item_id=data.items["item_id"].astype(str)).set_index("item_id")
        raw_tags = by_id["tags"] if "tags" in by_id else pd.Series(dtype=object)
        cold_tags = [
            [str(t) for t in tags] if isinstance(tags, list | tuple | np.ndarray) else []
            for tags in raw_tags.reindex(catalog.items.ids[cold - 1].tolist())
        ]
        out["ranking"] = evaluate_cold_ranking(
            cfg, catalog, warm_ix, warm_examples, warm_model, warm_items, cold, content,
            cold_tags, users, relevant, relevant_warm, seen_full,
        )  # fmt: skip
    out.update(
        {
            "fraction": fraction,
            "seed": seed,
            "n_items": catalog.n_items - 1,
            "n_cold_items": len(cold),
            "n_cold_items_in_test": len(set().union(*relevant.values())) if relevant else 0,
            "n_users": len(users),
            "n_test_interactions": int(sum(len(r) for r in relevant.values())),
            "n_train_removed": int(removed.sum()),
            "retrieval_epochs": cfg.retrieval_epochs,
            "projection": {k: v for k, v in quality.items() if k != "heldout_by_lambda"},
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    return out
