"""The Recommend / SimilarItems responses equal what the gateway built before it built each item
once (a RankedItem per item in the pipeline, then a RecommendedItem + StageScores per item in
the servicer): the reference below is that construction, verbatim, over the same stage answers.

Covered: ranked and unranked (ranking down, cold user: candidates' order), NaN ratings for the
items ranking did not rate (-> 0), prices with NaN (no price: field absent, currency ""),
tags, k larger than the candidates, filters, and SimilarItems.
"""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from recserve.v1 import gateway_pb2
from services.contract.bundle import DatasetFacts
from services.contract.types import CandidateList, FilterSpec, RankScores
from services.gateway.catalog import GatewayCatalog
from services.gateway.pipeline import Pipeline
from services.gateway.results import RankedItem, RankedItems
from services.gateway.servicer import GatewayServicer
from services.gateway.stages import Stages
from tests.services.test_gateway_pipeline import (
    SPEC,
    Down,
    FakeFeatures,
    FakeRetrieval,
    FakeUserValue,
    Limits,
    make_catalog,
)


class NaNRanking:
    """Scores every candidate; rates (rating, P(positive)) only the best by P(interact), the
    rest NaN as the real ranking stage answers them: here only half the `rate_top_k` asked for,
    so that items shown without a rating are exercised too. float32 like the models."""

    async def rank(self, user, item_indices, rate_top_k: int = 0, query=None) -> RankScores:
        items = np.asarray(item_indices, dtype=np.int64)
        p_interact = ((items * 37) % 11 / 11 + items / 1000).astype(np.float32)
        p_positive = (((items * 13) % 7 + 1) / 8).astype(np.float32)
        rating = (1 + 4 * p_positive).astype(np.float32)
        if rate_top_k:
            unrated = np.argsort(-p_interact, kind="stable")[(rate_top_k + 1) // 2 :]
            rating[unrated] = np.nan
            p_positive[unrated] = np.nan
        return RankScores(p_positive=p_positive, rating=rating, p_interact=p_interact)


def _catalog(priced: bool) -> GatewayCatalog:
    catalog = make_catalog()
    if not priced:
        return catalog
    prices = np.linspace(0.5, 13.25, len(catalog.ids))
    prices[[0, 3, 7]] = np.nan  # no price for these
    return dataclasses.replace(catalog, prices=prices[:-1])  # the last row: out of range


def _pipeline(catalog: GatewayCatalog, currency: str, **overrides) -> Pipeline:
    stages = {
        "features": FakeFeatures(catalog),
        "retrieval": FakeRetrieval(catalog),
        "ranking": NaNRanking(),
        "uservalue": FakeUserValue(),
        **overrides,
    }
    limits = Limits(max_k=20, candidates=8, max_batch=20)
    return Pipeline(Stages(**stages), catalog, SPEC, limits, DatasetFacts(currency=currency))


# --- the construction before: verbatim ----------------------------------------------------------


def _old_rated(value: float) -> float:
    value = float(value)
    return value if value == value else 0.0


def _old_top_k(self, catalog, candidates: CandidateList, ranks, k: int, *, by_model: bool):
    n = len(candidates)
    zeros = np.zeros(n, np.float32)
    p_interact = ranks.p_interact if ranks is not None else zeros
    p_positive = ranks.p_positive if ranks is not None else zeros
    rating = ranks.rating if ranks is not None else zeros
    score = p_interact if ranks is not None and by_model else candidates.scores
    order = np.argsort(-score, kind="stable")[:k]
    rows = candidates.item_indices[order]
    return [
        RankedItem(
            item_id=str(catalog.ids[row]),
            title=str(catalog.titles[row]),
            tags=catalog.item_tags[row],
            score=float(score[j]),
            predicted_rating=_old_rated(rating[j]),
            retrieval_score=float(candidates.scores[j]),
            ranking_score=_old_rated(p_positive[j]),
            interaction_score=float(p_interact[j]),
            price=catalog.price(row),
            currency=self.dataset.currency,
        )
        for j, row in zip(order.tolist(), rows.tolist(), strict=True)
    ]


def _old_items(items) -> list[gateway_pb2.RecommendedItem]:
    return [
        gateway_pb2.RecommendedItem(
            item_id=item.item_id,
            title=item.title,
            tags=item.tags,
            score=item.score,
            predicted_rating=item.predicted_rating,
            stage_scores=gateway_pb2.StageScores(
                retrieval=item.retrieval_score,
                ranking=item.ranking_score,
                rating=item.predicted_rating,
                interaction=item.interaction_score,
            ),
            price=item.price,
            currency=item.currency if item.price is not None else "",
        )
        for item in items
    ]


class _OldPipeline(Pipeline):
    _top_k = _old_top_k


def _old_recommend(pipeline: Pipeline, request: gateway_pb2.RecommendRequest):
    from services.platform import convert

    answer = asyncio.run(
        pipeline.recommend(
            request.user_id,
            request.k,
            convert.filters_from_proto(request.filters),
            tuple(request.context.recent_items),
            time_s=request.context.time,
        )
    )
    return answer, gateway_pb2.RecommendResponse(
        items=_old_items(answer.items),
        model_version=answer.model_version,
        user_value=None
        if answer.user_value is None
        else convert.user_value_to_proto(answer.user_value),
        cold_start=answer.cold_start,
        fallbacks=list(answer.fallbacks),
    )


def _as_old(pipeline: Pipeline) -> Pipeline:
    old = _OldPipeline.__new__(_OldPipeline)
    old.__dict__.update(pipeline.__dict__)
    return old


REQUESTS = [
    gateway_pb2.RecommendRequest(user_id="u1", k=5),
    gateway_pb2.RecommendRequest(user_id="u1", k=1),
    gateway_pb2.RecommendRequest(user_id="u1", k=20),  # more than the candidates
    gateway_pb2.RecommendRequest(user_id="u2", k=6, filters={"exclude_seen": False}),
    gateway_pb2.RecommendRequest(user_id="u1", k=4, filters={"include_tags": ["Comedy"]}),
    gateway_pb2.RecommendRequest(user_id="u1", k=4, filters={"exclude_items": ["i9", "i5"]}),
    gateway_pb2.RecommendRequest(user_id="stranger", k=5),  # cold: popular, candidates' order
    gateway_pb2.RecommendRequest(user_id="u1", k=3, context={"recent_items": ["i12"]}),
]


@pytest.mark.parametrize("priced", [True, False])
@pytest.mark.parametrize("down", [None, "ranking", "retrieval", "features"])
@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: f"{r.user_id}-k{r.k}")
def test_recommend_response_equals_the_construction_before(priced, down, request_):
    catalog = _catalog(priced)
    overrides = {down: Down()} if down else {}
    pipeline = _pipeline(catalog, "EUR" if priced else "", **overrides)
    got = asyncio.run(GatewayServicer(pipeline).Recommend(request_, None))
    old_answer, want = _old_recommend(_as_old(pipeline), request_)
    assert got == want
    assert len(got.items) > 0
    # The domain answer still reads as RankedItems, item by item, as before.
    new_answer = asyncio.run(
        pipeline.recommend(request_.user_id, request_.k, _filters(request_), _recent(request_))
    )
    assert isinstance(new_answer.items, RankedItems)
    assert list(new_answer.items) == old_answer.items
    assert new_answer.items == old_answer.items
    assert new_answer.items[0] == old_answer.items[0]
    assert new_answer.items[-2:] == old_answer.items[-2:]


def test_prices_and_nan_ratings_are_exercised():
    """The cases above do hit items without a price and items ranking did not rate."""
    pipeline = _pipeline(_catalog(True), "EUR")
    request_ = gateway_pb2.RecommendRequest(user_id="u1", k=8, filters={"exclude_seen": False})
    got = asyncio.run(GatewayServicer(pipeline).Recommend(request_, None))
    assert {i.HasField("price") for i in got.items} == {True, False}
    assert {i.currency for i in got.items} == {"EUR", ""}
    rated = [i.predicted_rating > 0 for i in got.items]
    assert rated == [True] * 4 + [False] * 4  # NaN (not rated) reads as 0
    assert [i.stage_scores.ranking > 0 for i in got.items] == rated
    one = asyncio.run(GatewayServicer(pipeline).Recommend(_with_k(request_, 1), None))
    assert one.items[0].predicted_rating > 0


def test_similar_items_response_equals_the_construction_before():
    pipeline = _pipeline(_catalog(True), "EUR")
    request_ = gateway_pb2.SimilarItemsRequest(item_id="i3", k=5)
    got = asyncio.run(GatewayServicer(pipeline).SimilarItems(request_, None))
    answer = asyncio.run(_as_old(pipeline).similar_items("i3", 5, FilterSpec()))
    want = gateway_pb2.SimilarItemsResponse(
        items=_old_items(answer.items), model_version=answer.model_version, title=answer.title
    )
    assert got == want and len(got.items) == 5


def _filters(request_: gateway_pb2.RecommendRequest) -> FilterSpec:
    from services.platform import convert

    return convert.filters_from_proto(request_.filters)


def _recent(request_: gateway_pb2.RecommendRequest) -> tuple[str, ...]:
    return tuple(request_.context.recent_items)


def _with_k(request_: gateway_pb2.RecommendRequest, k: int) -> gateway_pb2.RecommendRequest:
    out = gateway_pb2.RecommendRequest()
    out.CopyFrom(request_)
    out.k = k
    return out


def test_first_occurrences_and_members_match_numpy():
    """The sort-based dedup and membership _candidates / allowed use = np.unique / np.isin."""
    from services.gateway.catalog import _members
    from services.gateway.pipeline import _first_occurrences

    rng = np.random.default_rng(7)
    for n in (0, 1, 2, 5, 200):
        items = rng.integers(0, 40, n).astype(np.int64)
        want = np.zeros(n, dtype=bool)
        want[np.unique(items, return_index=True)[1]] = True
        assert (_first_occurrences(items) == want).all()
        for m in (1, 3, 50):
            values = rng.integers(0, 40, m).astype(np.int64)  # unsorted, with repeats
            assert (_members(items, values) == np.isin(items, values)).all()
            assert (_members(items, np.sort(values)) == np.isin(items, values)).all()
