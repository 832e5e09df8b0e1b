"""What the gateway pipeline answers (domain types; the servicer turns them into protobuf)."""

from __future__ import annotations

from dataclasses import dataclass

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


@dataclass(frozen=True)
class Recommendation:
    items: list[RankedItem]
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
    items: list[RankedItem]
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
