"""RecommendTags evaluation: do a user's tag affinities predict the tags of their next items?

For each test user the relevant tags are the tags (genres) of their held-out items. Each
system ranks all tags for the user; the ranking is scored with the top-K metrics over tags:

    ours                Retriever.tag_affinities (history tag shares + predicted next items)
    tag_popularity      every tag's share of training interactions (the same for every user)
    user_history        the tag frequencies of the user's own training items

Graded relevance is also reported: the share of the user's test items carrying each tag,
scored as weighted recall@K (the share of test-item tag mass covered by the top K tags).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from training.evaluate import metrics as M

CUTOFFS = (1, 3, 5)


def _item_tags(items: pd.DataFrame) -> dict[str, tuple[str, ...]]:
    return {str(i): tuple(t) for i, t in zip(items["item_id"], items["tags"], strict=True)}


def relevant_tags(
    test: pd.DataFrame, item_tags: Mapping[str, Sequence[str]]
) -> dict[str, Counter[str]]:
    """{user: Counter(tag -> number of the user's test items with that tag)}."""
    out: dict[str, Counter[str]] = {}
    for user, items in test.groupby("user_id")["item_id"]:
        counts: Counter[str] = Counter()
        for item in items.astype(str):
            counts.update(item_tags.get(item, ()))
        if counts:
            out[str(user)] = counts
    return out


def tag_popularity_ranking(
    train: pd.DataFrame, item_tags: Mapping[str, Sequence[str]], users: Sequence[str]
) -> dict[str, list[str]]:
    counts: Counter[str] = Counter()
    for item, n in train["item_id"].astype(str).value_counts().items():
        for tag in item_tags.get(item, ()):
            counts[tag] += n
    order = [t for t, _ in counts.most_common()]
    return {u: order for u in users}


def user_history_ranking(
    train: pd.DataFrame, item_tags: Mapping[str, Sequence[str]], users: Sequence[str]
) -> dict[str, list[str]]:
    """Own-history tag frequency; ties (and tags never seen) broken by global popularity."""
    global_order = tag_popularity_ranking(train, item_tags, users[:1])[users[0]] if users else []
    rank_of = {t: i for i, t in enumerate(global_order)}
    by_user = train.groupby("user_id")["item_id"].apply(lambda s: s.astype(str).tolist())
    out = {}
    for user in users:
        counts: Counter[str] = Counter()
        for item in by_user.get(user, []):
            counts.update(item_tags.get(item, ()))
        out[user] = sorted(global_order, key=lambda t: (-counts[t], rank_of[t]))
    return out


def weighted_recall_at_k(
    recommended: Mapping[str, Sequence[str]], relevant: Mapping[str, Counter[str]], k: int
) -> float:
    """Mean over users of (test-item tag mass in the top k tags) / (all test-item tag mass)."""
    scores = [
        sum(counts[t] for t in list(recommended.get(u, ()))[:k]) / sum(counts.values())
        for u, counts in relevant.items()
    ]
    return float(sum(scores) / len(scores)) if scores else float("nan")


def score_tag_rankings(
    rankings: Mapping[str, Mapping[str, Sequence[str]]], relevant: Mapping[str, Counter[str]]
) -> dict[str, dict[str, float]]:
    binary = {u: set(c) for u, c in relevant.items()}
    out: dict[str, dict[str, float]] = {}
    for name, ranking in rankings.items():
        row: dict[str, float] = {}
        for k in CUTOFFS:
            row[f"ndcg@{k}"] = M.ndcg_at_k(ranking, binary, k)
            row[f"recall@{k}"] = M.recall_at_k(ranking, binary, k)
            row[f"precision@{k}"] = M.precision_at_k(ranking, binary, k)
            row[f"weighted_recall@{k}"] = weighted_recall_at_k(ranking, relevant, k)
        row["mrr@5"] = M.mrr_at_k(ranking, binary, 5)
        out[name] = row
    return out


def evaluate_tags(
    train: pd.DataFrame,
    test: pd.DataFrame,
    items: pd.DataFrame,
    ours: Mapping[str, Sequence[tuple[str, float]]] | None = None,
) -> dict[str, Any]:
    """ours: {user: [(tag, affinity), ...] best first} from RecommendTags (None: baselines only)."""
    item_tags = _item_tags(items)
    relevant = relevant_tags(test, item_tags)
    users = sorted(relevant)
    rankings: dict[str, Mapping[str, Sequence[str]]] = {}
    if ours is not None:
        rankings["ours"] = {u: [t for t, _ in ours.get(u, ())] for u in users}
    rankings["tag_popularity"] = tag_popularity_ranking(train, item_tags, users)
    rankings["user_history"] = user_history_ranking(train, item_tags, users)
    return {
        "n_users": len(users),
        "mean_relevant_tags": float(sum(len(c) for c in relevant.values()) / max(len(users), 1)),
        "systems": score_tag_rankings(rankings, relevant),
    }
