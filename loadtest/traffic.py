"""Realistic traffic: who asks, and what.

Users are drawn from the bundle's real activity distribution (a user's share of requests = their
share of the training events), with a configurable fraction of unknown users (ids the bundle has
never seen: cold start). Items for feedback and rating requests are drawn by popularity. The mix
of request kinds is configurable, e.g. "recommend=0.8,feedback=0.15,predict=0.05".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq

from recserve.v1 import common_pb2, gateway_pb2

KINDS = ("recommend", "feedback", "predict", "similar", "tags")
DEFAULT_MIX = "recommend=0.8,feedback=0.15,predict=0.05"
_BLOCK = 4096  # random draws are made in blocks: per-request numpy calls cost microseconds


def parse_mix(text: str) -> dict[str, float]:
    """ "recommend=0.8,feedback=0.15,predict=0.05" -> normalised weights (sum 1)."""
    weights: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        kind, _, value = part.partition("=")
        kind = kind.strip()
        if kind not in KINDS:
            raise ValueError(f"unknown request kind {kind!r}; known: {', '.join(KINDS)}")
        weight = float(value) if value else 1.0
        if weight < 0:
            raise ValueError(f"weight of {kind} is negative")
        weights[kind] = weight
    total = sum(weights.values())
    if total <= 0:
        raise ValueError(f"request mix {text!r} has no positive weight")
    return {k: w / total for k, w in weights.items() if w > 0}


def _cdf(weights: np.ndarray) -> np.ndarray:
    cdf = np.cumsum(np.asarray(weights, dtype=np.float64))
    return cdf / cdf[-1]


@dataclass
class Population:
    """Known users with their activity weights, items with their popularity weights."""

    user_ids: np.ndarray  # str[U]
    user_weights: np.ndarray  # float64[U]
    item_ids: np.ndarray  # str[I]
    item_weights: np.ndarray  # float64[I]

    @classmethod
    def from_bundle(cls, bundle_dir: Path | str) -> Population:
        """Reads interactions.parquet (events per user) and items.parquet (popularity)."""
        bundle_dir = Path(bundle_dir)
        events = pq.read_table(bundle_dir / "interactions.parquet", columns=["user_id"])
        counts = pc.value_counts(events.column("user_id").combine_chunks())
        users = counts.field("values").cast("string").to_numpy(zero_copy_only=False)
        user_weights = counts.field("counts").to_numpy().astype(np.float64)
        items = pq.read_table(bundle_dir / "items.parquet", columns=["item_id", "popularity"])
        item_ids = items.column("item_id").cast("string").to_numpy(zero_copy_only=False)
        popularity = items.column("popularity").to_numpy().astype(np.float64) + 1.0
        return cls(users.astype(str), user_weights, item_ids.astype(str), popularity)

    @classmethod
    def synthetic(cls, n_users: int, n_items: int, *, zipf: float = 1.1) -> Population:
        """Zipf-like activity over users "1".."n_users" and items "1".."n_items"."""

        def ranks(n: int) -> np.ndarray:
            return 1.0 / np.arange(1, n + 1, dtype=np.float64) ** zipf

        return cls(
            np.arange(1, n_users + 1).astype(str),
            ranks(n_users),
            np.arange(1, n_items + 1).astype(str),
            ranks(n_items),
        )


class Traffic:
    """Builds the next request: `next()` -> (kind, gateway method name, request message)."""

    METHODS: ClassVar[dict[str, str]] = {
        "recommend": "Recommend",
        "feedback": "Feedback",
        "predict": "PredictRatings",
        "similar": "SimilarItems",
        "tags": "RecommendTags",
    }

    def __init__(
        self,
        population: Population,
        mix: dict[str, float],
        *,
        unknown_users: float = 0.05,
        k: int = 20,
        predict_items: int = 10,
        seed: int = 0,
    ) -> None:
        if not 0.0 <= unknown_users <= 1.0:
            raise ValueError("unknown_users must be in [0, 1]")
        self.population = population
        self.mix = mix
        self.unknown_users = unknown_users
        self.k = k
        self.predict_items = predict_items
        self.rng = np.random.default_rng(seed)
        self._kinds = list(mix)
        self._kind_cdf = _cdf(np.array([mix[k] for k in self._kinds]))
        self._user_cdf = _cdf(population.user_weights)
        self._item_cdf = _cdf(population.item_weights)
        self._seed = seed
        self._serial = 0
        self._pools: dict[str, list[int]] = {}

    def _draw(self, name: str, cdf: np.ndarray) -> int:
        pool = self._pools.get(name)
        if not pool:
            pool = np.searchsorted(cdf, self.rng.random(_BLOCK), side="right").tolist()
            self._pools[name] = pool
        return min(pool.pop(), cdf.size - 1)

    def user(self) -> str:
        if self.unknown_users and self.rng.random() < self.unknown_users:
            self._serial += 1
            return f"loadtest-new-{self._seed}-{self._serial}"
        return str(self.population.user_ids[self._draw("user", self._user_cdf)])

    def item(self) -> str:
        return str(self.population.item_ids[self._draw("item", self._item_cdf)])

    def next(self) -> tuple[str, str, object]:
        kind = self._kinds[self._draw("kind", self._kind_cdf)]
        return kind, self.METHODS[kind], self.build(kind)

    def build(self, kind: str):
        if kind == "recommend":
            return gateway_pb2.RecommendRequest(
                user_id=self.user(), k=self.k, filters=common_pb2.Filters(exclude_seen=True)
            )
        if kind == "feedback":
            rating = float(self.rng.integers(1, 6))
            event = common_pb2.Event(
                user_id=self.user(),
                item_id=self.item(),
                type=common_pb2.EVENT_TYPE_RATING,
                rating=rating,
            )
            return gateway_pb2.FeedbackRequest(events=[event])
        if kind == "predict":
            items = list(dict.fromkeys(self.item() for _ in range(self.predict_items)))
            return gateway_pb2.PredictRatingsRequest(user_id=self.user(), item_ids=items)
        if kind == "similar":
            return gateway_pb2.SimilarItemsRequest(item_id=self.item(), k=self.k)
        if kind == "tags":
            return gateway_pb2.RecommendTagsRequest(user_id=self.user(), k=5)
        raise ValueError(f"unknown request kind {kind!r}")
