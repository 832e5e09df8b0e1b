"""What the gateway pipeline answers (domain types; the servicer turns them into protobuf)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import overload

import numpy as np

from services.gateway.catalog import GatewayCatalog
from services.gateway.stages import ValueScore


@dataclass(frozen=True, slots=True)
class RankedItem:
    item_id: str
    title: str
    tags: tuple[str, ...]
    score: float  # what the list is sorted by
    predicted_rating: float  # 1..5; 0 when no rating was predicted
    retrieval_score: float  # candidate source's score: embedding inner product or popularity
    ranking_score: float  # ranking model's P(rating >= 4); 0 when ranking was skipped
    interaction_score: float  # ranking model's P(interact), the list order when ranked; else 0
    price: float | None = None  # in the dataset's currency; None when the item has no price
    currency: str = ""


@dataclass(frozen=True, slots=True, eq=False)
class RankedItems(Sequence[RankedItem]):
    """A ranked list as arrays, aligned by position (best first): catalog rows and one float
    matrix of their scores.

    What the pipeline's top k answers: built in one vectorised pass (no object per item). The
    servicer writes the protobuf bytes straight from these arrays (`wire`); the columns read
    as Python lists (`item_ids`, `scores`, ...) and the whole as a Sequence[RankedItem]
    (`items[0].item_id`, iteration, len), each made on access, for callers that want them
    (experiments, tests, tools)."""

    catalog: GatewayCatalog
    rows: np.ndarray  # int64[k]: catalog rows
    # float64[5, k] (float32 values widened exactly): the list's score, predicted rating,
    # retrieval score, ranking score (P(positive)), interaction score (P(interact)).
    columns: np.ndarray
    currency: str = ""  # the dataset's currency (RankedItem.currency)

    def __len__(self) -> int:
        return int(self.rows.size)

    @property
    def item_ids(self) -> list[str]:
        return self.catalog.ids[self.rows].tolist()

    @property
    def titles(self) -> list[str]:
        return self.catalog.titles[self.rows].tolist()

    @property
    def tags(self) -> list[tuple[str, ...]]:
        return self.catalog.tags_by_row[self.rows].tolist()

    @property
    def prices(self) -> list[float | None]:
        """None: the item has no price."""
        return self.catalog.prices_by_row[self.rows].tolist()

    @property
    def scores(self) -> list[float]:
        return self.columns[0].tolist()

    @property
    def predicted_ratings(self) -> list[float]:
        return self.columns[1].tolist()

    @property
    def retrieval_scores(self) -> list[float]:
        return self.columns[2].tolist()

    @property
    def ranking_scores(self) -> list[float]:
        return self.columns[3].tolist()

    @property
    def interaction_scores(self) -> list[float]:
        return self.columns[4].tolist()

    def wire(self) -> bytes:
        """The RecommendedItem messages as protobuf bytes (a response's repeated field 1)."""
        return self.catalog.item_wire(self.currency).items(self.rows, self.columns)

    @overload
    def __getitem__(self, index: int) -> RankedItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[RankedItem]: ...

    def __getitem__(self, index: int | slice) -> RankedItem | list[RankedItem]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        row = int(self.rows[index])
        score, rating, retrieval, ranking, interaction = self.columns[:, index].tolist()
        return RankedItem(
            str(self.catalog.ids[row]),
            str(self.catalog.titles[row]),
            self.catalog.tags_by_row[row],
            score,
            rating,
            retrieval,
            ranking,
            interaction,
            self.catalog.prices_by_row[row],
            self.currency,
        )

    def __iter__(self) -> Iterator[RankedItem]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class Recommendation:
    items: RankedItems
    model_version: str
    user_value: ValueScore | None  # None when the user-value stage was unavailable
    cold_start: bool
    fallbacks: tuple[str, ...]  # e.g. ("ranking_unavailable",)


@dataclass(frozen=True, slots=True)
class PredictedRating:
    item_id: str
    rating: float
    p_positive: float
    p_interact: float = 0.0  # the ranking model's P(interact): what Recommend orders by


@dataclass(frozen=True)
class RatingPrediction:
    ratings: list[PredictedRating]
    model_version: str
    cold_start: bool


@dataclass(frozen=True)
class SimilarItems:
    items: RankedItems
    model_version: str
    title: str = ""  # of the item asked about


@dataclass(frozen=True)
class TagAffinities:
    tags: list[tuple[str, float]]  # best first
    model_version: str
    cold_start: bool


@dataclass(frozen=True)
class UserValues:
    values: list[ValueScore]  # aligned with the requested user ids
    model_version: str
