"""What the gateway pipeline answers (domain types; the servicer turns them into protobuf)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, fields
from typing import overload

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
    """A ranked list as columns, one Python list per field, aligned by position (best first).

    What the pipeline's top k answers: built in one vectorised pass (no object per item), and
    the servicer builds each protobuf message straight from these columns. It reads as a
    Sequence[RankedItem] too (`items[0].item_id`, iteration, len), each RankedItem made on
    access, for callers that want one object per item (tests, experiments, tools)."""

    item_ids: list[str]
    titles: list[str]
    tags: list[tuple[str, ...]]
    scores: list[float]
    predicted_ratings: list[float]
    retrieval_scores: list[float]
    ranking_scores: list[float]
    interaction_scores: list[float]
    prices: list[float | None]  # None: the item has no price
    currency: str = ""  # the dataset's currency (RankedItem.currency)

    def __len__(self) -> int:
        return len(self.item_ids)

    @overload
    def __getitem__(self, index: int) -> RankedItem: ...

    @overload
    def __getitem__(self, index: slice) -> list[RankedItem]: ...

    def __getitem__(self, index: int | slice) -> RankedItem | list[RankedItem]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return RankedItem(
            self.item_ids[index],
            self.titles[index],
            self.tags[index],
            self.scores[index],
            self.predicted_ratings[index],
            self.retrieval_scores[index],
            self.ranking_scores[index],
            self.interaction_scores[index],
            self.prices[index],
            self.currency,
        )

    def __iter__(self) -> Iterator[RankedItem]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, RankedItems):
            return all(getattr(self, f.name) == getattr(other, f.name) for f in fields(self))
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
