"""Seeded synthetic catalog for scale: items, users and an event log in the canonical schema.

Items are the clustered embeddings of bench.synthetic (Zipf-like cluster sizes, so a trained
item tower's geometry, not uniform noise); each cluster carries one primary tag, some items a
second one. Every user has a home cluster (drawn with the clusters' sizes as weights) and a
Zipf-like activity level; 90% of a user's events are items of the home cluster, the rest of
one other cluster, so a user sits near the items they interacted with, as in bench.synthetic.
Values are per-event spend (lognormal, dollars) so the CDNOW-trained user-value model sees
plausible inputs. Same arguments -> the same tables and vectors, bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.synthetic import clustered_with_assignment

TAGS = tuple(f"tag{t:02d}" for t in range(18))
GENDERS = ("F", "M")
OCCUPATIONS = ("artist", "engineer", "other", "student", "writer")
SECONDS_PER_DAY = 86_400
LOG_START = 1_600_000_000  # 2020-09-13 UTC: the event log spans `days` days from here
HOME_SHARE = 0.9


@dataclass(frozen=True)
class SyntheticCatalog:
    """Tables in the canonical schema (training.data.schema) plus the embedding geometry."""

    items: pd.DataFrame  # item_id, title, tags (list[str]), year
    users: pd.DataFrame  # user_id, age, gender, occupation
    events: pd.DataFrame  # user_id, item_id, timestamp, rating, value; sorted by time
    item_vectors: np.ndarray  # float32[n_items, D], L2-normalised, row i = item_ids[i]
    user_vectors: np.ndarray  # float32[n_users, D], L2-normalised: each user's taste
    centroids: np.ndarray  # float32[C, D]


def _members(assign: np.ndarray, clusters: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Items grouped by cluster -> (item positions sorted by cluster, start, size per cluster)."""
    order = np.argsort(assign, kind="stable")
    sizes = np.bincount(assign, minlength=clusters)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    return order, starts, sizes


def _draw_members(
    rng: np.random.Generator, cluster: np.ndarray, members: tuple[np.ndarray, ...]
) -> np.ndarray:
    """One random item position of each given cluster (clusters must be non-empty)."""
    order, starts, sizes = members
    pick = (rng.random(cluster.size) * sizes[cluster]).astype(np.int64)
    return order[starts[cluster] + pick]


def generate(
    n_items: int,
    n_users: int,
    *,
    dim: int = 64,
    clusters: int | None = None,
    events_per_user: float = 5.0,
    days: int = 180,
    seed: int = 0,
) -> SyntheticCatalog:
    """The whole synthetic catalog. clusters default: ~n_items / 1000 (1000 at 1M items)."""
    clusters = clusters or max(2, min(1000, n_items // 1000 or 2))
    rng = np.random.default_rng(seed + 10)
    item_vectors, centroids, assign = clustered_with_assignment(
        n_items, dim, clusters=clusters, seed=seed
    )
    sizes = np.bincount(assign, minlength=clusters)
    nonempty = np.flatnonzero(sizes)
    members = _members(assign, clusters)

    item_ids = np.char.add("i", np.arange(1, n_items + 1).astype(str))
    primary = assign % len(TAGS)
    second = rng.integers(0, len(TAGS), size=n_items)
    has_second = (rng.random(n_items) < 0.3) & (second != primary)
    tag_names = np.asarray(TAGS, dtype=object)
    tags = [
        [tag_names[p], tag_names[s]] if h else [tag_names[p]]
        for p, s, h in zip(primary.tolist(), second.tolist(), has_second.tolist(), strict=True)
    ]
    items = pd.DataFrame(
        {
            "item_id": item_ids,
            "title": np.char.add("Synthetic item ", np.arange(1, n_items + 1).astype(str)),
            "tags": tags,
            "year": rng.integers(1930, 2000, size=n_items),
        }
    )

    user_ids = np.char.add("u", np.arange(1, n_users + 1).astype(str))
    home = rng.choice(nonempty, size=n_users, p=sizes[nonempty] / sizes.sum())
    user_vectors = centroids[home] + rng.standard_normal((n_users, dim)).astype(np.float32) * (
        0.5 / np.sqrt(dim)
    )
    user_vectors /= np.linalg.norm(user_vectors, axis=1, keepdims=True)
    users = pd.DataFrame(
        {
            "user_id": user_ids,
            "age": rng.integers(15, 70, size=n_users),
            "gender": np.asarray(GENDERS)[rng.integers(0, len(GENDERS), size=n_users)],
            "occupation": np.asarray(OCCUPATIONS)[rng.integers(0, len(OCCUPATIONS), n_users)],
        }
    )

    # Activity: 1 + Zipf-like (Pareto), scaled to a mean of events_per_user before rounding
    # down and capping at 501 (so a little below it: 4.4 for the default 5).
    raw = rng.pareto(1.5, size=n_users)
    counts = 1 + np.minimum(raw * max(events_per_user - 1, 0) / max(raw.mean(), 1e-9), 500)
    counts = counts.astype(np.int64)
    owner = np.repeat(np.arange(n_users), counts)
    cluster = home[owner]
    away = rng.random(owner.size) >= HOME_SHARE
    cluster[away] = rng.choice(nonempty, size=int(away.sum()), p=sizes[nonempty] / sizes.sum())
    item_pos = _draw_members(rng, cluster, members)
    timestamps = LOG_START + rng.integers(0, days * SECONDS_PER_DAY, size=owner.size)
    ratings = rng.choice(np.arange(1, 6), size=owner.size, p=[0.06, 0.11, 0.27, 0.34, 0.22])
    values = np.round(rng.lognormal(3.0, 0.8, size=owner.size), 2)
    events = pd.DataFrame(
        {
            "user_id": user_ids[owner],
            "item_id": item_ids[item_pos],
            "timestamp": timestamps.astype(np.int64),
            "rating": ratings.astype(np.float32),
            "value": values.astype(np.float32),
        }
    )
    events = events.sort_values(["timestamp", "user_id"], kind="stable").reset_index(drop=True)
    return SyntheticCatalog(items, users, events, item_vectors, user_vectors, centroids)
