"""The gateway pipeline as a specification, over deterministic fake stages.

The fakes serve a 12-item catalog: items "i1".."i12" have item index 1..12; popularity falls
with the index (i1 most popular); odd items are "Comedy", even items "Drama", every third item
is also "Action". Retrieval prefers high indices, ranking prefers indices ≡ 1 (mod 4), so the
two orders differ and each test can tell which one it got.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import numpy as np
import pytest

from services.contract.errors import InvalidArgument, NotFound, ResourceExhausted, Unavailable
from services.contract.features import SECONDS_PER_DAY, FeatureSpec, pad_history
from services.contract.types import (
    CandidateList,
    Event,
    EventKind,
    FilterSpec,
    ItemInfo,
    RankScores,
    UserState,
)
from services.gateway.catalog import GatewayCatalog
from services.gateway.config import Limits
from services.gateway.pipeline import Pipeline
from services.gateway.stages import DeadlineExceeded, Stages, ValueScore

N_ITEMS = 12
SPEC = FeatureSpec(history_len=5, tags=("Action", "Comedy", "Drama"))


def _tags(i: int) -> tuple[str, ...]:
    tags = ("Comedy",) if i % 2 else ("Drama",)
    return (*tags, "Action") if i % 3 == 0 else tags


def make_catalog() -> GatewayCatalog:
    infos = [ItemInfo("", 0, "", (), 0, 0)] + [
        ItemInfo(f"i{i}", i, f"Title {i}", _tags(i), 1990, 100 - i) for i in range(1, N_ITEMS + 1)
    ]
    return GatewayCatalog.from_infos("test-v1", infos, SPEC.tags)


class FakeFeatures:
    """Known users "u1" (history i1, i2) and "u2" (history i3); everyone else unknown."""

    def __init__(self, catalog: GatewayCatalog) -> None:
        self.catalog = catalog
        self.history: dict[str, list[int]] = {"u1": [2, 1], "u2": [3]}

    async def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState:
        recent = [int(i) for i in self.catalog.index_of(recent_items) if i > 0]
        stored = self.history.get(user_id, [])
        items = recent + stored
        return UserState(
            user_id=user_id,
            known=user_id in ("u1", "u2"),
            user_index={"u1": 1, "u2": 2}.get(user_id, 0),
            profile=np.zeros(3, dtype=np.int64),
            history=pad_history(items, SPEC.history_len),
            seen=np.unique(np.asarray(items, dtype=np.int64)),
            activity_days=np.arange(len(stored), dtype=np.int64),
            activity_values=np.ones(len(stored), dtype=np.float32),
            event_count=len(stored),
        )

    async def get_users(self, user_ids: Sequence[str]) -> list[UserState]:
        return [await self.get_user(u) for u in user_ids]

    async def apply_events(self, events: Sequence[Event]) -> int:
        for event in events:
            row = int(self.catalog.index_of([event.item_id])[0])
            self.history.setdefault(event.user_id, []).insert(0, row)
        return len(events)


class FakeRetrieval:
    """Scores item i as i / 100 (best = highest index); honours filters like the real one."""

    def __init__(self, catalog: GatewayCatalog) -> None:
        self.catalog = catalog
        self.calls = 0

    async def retrieve(self, user: UserState, k: int, filters: FilterSpec) -> CandidateList:
        self.calls += 1
        items = np.arange(N_ITEMS, 0, -1, dtype=np.int64)
        items = items[self.catalog.allowed(items, filters, user.seen)][:k]
        return CandidateList(items, (items / 100).astype(np.float32))

    async def similar(self, item_id: str, k: int, filters: FilterSpec) -> CandidateList:
        return await self.retrieve(await FakeFeatures(self.catalog).get_user("x"), k, filters)

    async def tag_affinities(self, user: UserState, k: int) -> list[tuple[str, float]]:
        return [("Comedy", 0.5), ("Drama", 0.3), ("Action", 0.2)][:k]


class FakeRanking:
    """P(interact) high for indices ≡ 1 (mod 4); P(positive) high for indices ≡ 2 (mod 4), so
    the order the gateway must use (P(interact)) differs from P(positive) and from retrieval's;
    rating = 1 + 4 * P(positive)."""

    async def rank(
        self, user: UserState, item_indices: np.ndarray, rate_top_k: int = 0, query=None
    ) -> RankScores:
        items = np.asarray(item_indices, dtype=np.int64)
        tie = items.astype(np.float32) / 1000
        p_interact = np.where(items % 4 == 1, 0.9, 0.2).astype(np.float32) + tie
        p_positive = np.where(items % 4 == 2, 0.15, 0.05).astype(np.float32) + tie
        return RankScores(
            p_positive=p_positive,
            rating=(1 + 4 * p_positive).astype(np.float32),
            p_interact=p_interact,
        )


class FakeUserValue:
    """Records the as_of_day of every call (0 = the scorer's "now")."""

    def __init__(self) -> None:
        self.days: list[int] = []

    async def score(
        self,
        user_ids: Sequence[str],
        activities: Mapping[str, object] | None = None,
        as_of_day: int = 0,
    ) -> list[ValueScore]:
        self.days.append(as_of_day)
        live = activities or {}
        return [
            ValueScore(u, 0.8 if u in live else 0.1, 2.0, 10.0, "ACTIVE" if u in live else "NEW", 4)
            for u in user_ids
        ]


class Down:
    """Any stage, down: every method raises Unavailable (or DeadlineExceeded)."""

    def __init__(self, slow: bool = False) -> None:
        self.error = DeadlineExceeded if slow else Unavailable

    def __getattr__(self, name: str):
        async def fail(*args, **kwargs):
            raise self.error(f"{name}: injected failure")

        return fail


def make_pipeline(**overrides) -> Pipeline:
    """A pipeline over the fakes; pass features=/retrieval=/ranking=/uservalue= to replace one."""
    catalog = make_catalog()
    stages = {
        "features": FakeFeatures(catalog),
        "retrieval": FakeRetrieval(catalog),
        "ranking": FakeRanking(),
        "uservalue": FakeUserValue(),
        **overrides,
    }
    return Pipeline(Stages(**stages), catalog, SPEC, Limits(max_k=10, candidates=8, max_batch=20))


# --- the specification ----------------------------------------------------------------------

ALL = FilterSpec()
UNSEEN = FilterSpec(exclude_seen=True)


def run(coro):
    return asyncio.run(coro)


def ids(answer) -> list[str]:
    return [item.item_id for item in answer.items]


def test_recommend_returns_k_distinct_items_sorted_by_ranking_score():
    answer = run(make_pipeline().recommend("u1", 5, UNSEEN))
    assert len(ids(answer)) == len(set(ids(answer))) == 5
    scores = [item.score for item in answer.items]
    assert scores == sorted(scores, reverse=True)
    # Ranking prefers i9 and i5 (≡ 1 mod 4) over retrieval's favourites i12, i11, i10.
    assert ids(answer)[:2] == ["i9", "i5"]
    assert answer.items[0].interaction_score == pytest.approx(answer.items[0].score)
    assert answer.model_version == "test-v1"
    assert not answer.cold_start and answer.fallbacks == ()


def test_items_carry_titles_tags_rating_and_stage_scores():
    item = run(make_pipeline().recommend("u1", 1, UNSEEN)).items[0]
    assert item.title == "Title 9" and item.tags == ("Comedy", "Action")
    assert 1.0 <= item.predicted_rating <= 5.0
    assert item.retrieval_score == pytest.approx(0.09)
    assert item.interaction_score == pytest.approx(0.909)  # P(interact): the order
    assert item.ranking_score == pytest.approx(0.059)  # P(rating >= 4)
    assert item.predicted_rating == pytest.approx(1 + 4 * 0.059)


def test_recommend_orders_by_p_interact_not_p_positive():
    """P(positive) would put i10 and i6 (≡ 2 mod 4) first; the answer follows P(interact)."""
    answer = run(make_pipeline().recommend("u1", 8, UNSEEN))
    got = ids(answer)
    assert got[:3] == ["i9", "i5", "i12"]  # ≡ 1 (mod 4) first, then P(interact) ties by index
    by_p_positive = sorted(answer.items, key=lambda item: -item.ranking_score)
    assert [item.item_id for item in by_p_positive][:2] == ["i10", "i6"]
    assert got != [item.item_id for item in by_p_positive]
    assert [item.score for item in answer.items] == [
        item.interaction_score for item in answer.items
    ]
    assert all(item.ranking_score < item.interaction_score for item in answer.items)


def test_recommend_attaches_the_user_value():
    value = run(make_pipeline().recommend("u1", 3, UNSEEN)).user_value
    assert value is not None and value.user_id == "u1" and value.segment == "ACTIVE"


def test_user_value_is_scored_at_the_request_time():
    value = FakeUserValue()
    pipeline = make_pipeline(uservalue=value)
    run(pipeline.recommend("u1", 3, UNSEEN))  # time 0: the scorer's clock says which day
    day = 20_000  # 2024-10-04
    run(pipeline.recommend("u1", 3, UNSEEN, time_s=day * SECONDS_PER_DAY + 23 * 3600))
    run(pipeline.score_users(["u1"]))
    run(pipeline.score_users(["u1"], time_s=day * SECONDS_PER_DAY))
    assert value.days == [0, day, 0, day]


@pytest.mark.parametrize("time_s", [-1, 1, SECONDS_PER_DAY - 1])
def test_a_request_time_before_1970_01_02_is_invalid_argument(time_s):
    pipeline = make_pipeline()
    with pytest.raises(InvalidArgument, match=r"context\.time"):
        run(pipeline.recommend("u1", 3, UNSEEN, time_s=time_s))
    with pytest.raises(InvalidArgument, match=r"^time"):
        run(pipeline.score_users(["u1"], time_s=time_s))


def test_exclude_seen_drops_the_users_items_and_recent_items():
    answer = run(make_pipeline(retrieval=_ignores_filters()).recommend("u1", 10, UNSEEN, ["i9"]))
    assert not {"i1", "i2", "i9"} & set(ids(answer))


def test_an_in_process_retrieval_answer_is_not_checked_again_but_for_unknown_rows():
    """A retrieval stage that applies the filters itself (the in-process Retriever) is trusted:
    its answer is served as it is, but a row past this request's catalog (an item added after
    the request read it) is dropped."""

    class Applies(FakeRetrieval):
        applies_filters = True

        async def retrieve(self, user, k, filters):
            found = await super().retrieve(user, k, filters)
            extra = np.array([N_ITEMS + 5], dtype=np.int64)  # not in the catalog
            return CandidateList(
                np.concatenate((extra, found.item_indices)),
                np.concatenate((np.ones(1, np.float32), found.scores)),
            )

    pipeline = make_pipeline(retrieval=Applies(make_catalog()), ranking=Down())
    answer = run(pipeline.recommend("u1", 3, UNSEEN, ["i12"]))
    assert ids(answer) == ["i11", "i10", "i9"]  # i12 (recent) dropped by the stage itself
    trusted = make_pipeline(retrieval=Applies(make_catalog()), ranking=Down())
    trusted.stages.retrieval.retrieve = _ignores_filters().retrieve  # claims, does not apply
    assert "i12" in ids(run(trusted.recommend("u1", 3, UNSEEN, ["i12"])))


def test_without_exclude_seen_seen_items_may_come_back():
    answer = run(make_pipeline().recommend("u1", 10, ALL, ["i12"]))
    assert "i12" in ids(answer)


def test_include_and_exclude_tags_are_respected():
    pipeline = make_pipeline(retrieval=_ignores_filters())
    comedy = run(pipeline.recommend("u1", 10, FilterSpec(include_tags=("Comedy",))))
    assert comedy.items and all("Comedy" in item.tags for item in comedy.items)
    no_action = run(pipeline.recommend("u1", 10, FilterSpec(exclude_tags=("Action",))))
    assert no_action.items and all("Action" not in item.tags for item in no_action.items)


def test_exclude_items_are_never_returned():
    answer = run(make_pipeline().recommend("u1", 10, FilterSpec(exclude_items=("i9", "i5"))))
    assert not {"i9", "i5"} & set(ids(answer))


def test_unknown_user_gets_popular_items_flagged_cold_start():
    retrieval = FakeRetrieval(make_catalog())
    answer = run(make_pipeline(retrieval=retrieval).recommend("stranger", 4, UNSEEN))
    assert answer.cold_start
    assert ids(answer) == ["i1", "i2", "i3", "i4"]  # most popular first
    assert retrieval.calls == 0
    assert answer.user_value is not None and answer.user_value.segment == "NEW"


def test_cold_start_popular_items_still_apply_filters():
    answer = run(make_pipeline().recommend("stranger", 3, FilterSpec(include_tags=("Drama",))))
    assert answer.cold_start and ids(answer) == ["i2", "i4", "i6"]


def test_unknown_user_with_recent_items_is_personalised():
    answer = run(make_pipeline().recommend("stranger", 3, UNSEEN, ["i7"]))
    assert not answer.cold_start and "i7" not in ids(answer)


def test_feedback_is_reflected_by_the_next_recommend():
    pipeline = make_pipeline()
    assert "i9" in ids(run(pipeline.recommend("u1", 3, UNSEEN)))
    accepted = run(pipeline.feedback([Event("u1", "i9", EventKind.CLICK, 1_700_000_000)]))
    assert accepted == 1
    assert "i9" not in ids(run(pipeline.recommend("u1", 3, UNSEEN)))


# --- degradation ------------------------------------------------------------------------------


def test_ranking_down_returns_retrieval_order_and_says_so():
    answer = run(make_pipeline(ranking=Down()).recommend("u1", 4, UNSEEN))
    assert answer.fallbacks == ("ranking_unavailable",)
    assert ids(answer) == ["i12", "i11", "i10", "i9"]
    assert all(item.score == item.retrieval_score for item in answer.items)
    assert all(item.interaction_score == item.ranking_score == 0 for item in answer.items)


def test_ranking_too_slow_is_flagged_as_deadline_exceeded():
    answer = run(make_pipeline(ranking=Down(slow=True)).recommend("u1", 4, UNSEEN))
    assert answer.fallbacks == ("ranking_deadline_exceeded",)
    assert len(answer.items) == 4


def test_retrieval_down_ranks_popular_items_with_filters_applied():
    filters = FilterSpec(exclude_seen=True, exclude_tags=("Action",))
    answer = run(make_pipeline(retrieval=Down()).recommend("u1", 3, filters))
    assert answer.fallbacks == ("retrieval_unavailable",)
    assert not answer.cold_start
    assert not {"i1", "i2"} & set(ids(answer))
    assert all("Action" not in item.tags for item in answer.items)


def test_features_down_treats_the_user_as_cold():
    answer = run(make_pipeline(features=Down()).recommend("u1", 3, UNSEEN))
    assert answer.cold_start and answer.fallbacks == ("features_unavailable",)
    assert ids(answer) == ["i1", "i2", "i3"]


def test_user_value_down_omits_the_value():
    answer = run(make_pipeline(uservalue=Down()).recommend("u1", 3, UNSEEN))
    assert answer.user_value is None and answer.fallbacks == ("uservalue_unavailable",)
    assert len(answer.items) == 3


def test_every_stage_down_still_answers_with_popular_items():
    pipeline = make_pipeline(features=Down(), retrieval=Down(), ranking=Down(), uservalue=Down())
    answer = run(pipeline.recommend("u1", 2, UNSEEN))
    assert ids(answer) == ["i1", "i2"]
    assert set(answer.fallbacks) == {
        "features_unavailable",
        "ranking_unavailable",
        "uservalue_unavailable",
    }


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("user_id", "k", "filters"),
    [
        ("", 5, ALL),
        ("   ", 5, ALL),
        ("u" * 257, 5, ALL),
        ("u1", 0, ALL),
        ("u1", -3, ALL),
        ("u1", 5, FilterSpec(include_tags=("NoSuchTag",))),
        ("u1", 5, FilterSpec(include_tags=("Drama",), exclude_tags=("Drama",))),
        ("u1", 5, FilterSpec(exclude_items=("",))),
    ],
)
def test_bad_recommend_arguments_are_invalid_argument(user_id, k, filters):
    with pytest.raises(InvalidArgument):
        run(make_pipeline().recommend(user_id, k, filters))


def test_k_over_max_k_is_resource_exhausted():
    with pytest.raises(ResourceExhausted, match=r"limit of 10 .*RECSERVE_MAX_K"):
        run(make_pipeline().recommend("u1", 11, ALL))  # max_k = 10


def test_too_many_ids_in_one_request_is_resource_exhausted():
    with pytest.raises(ResourceExhausted, match=r"limit of 20 .*RECSERVE_MAX_BATCH"):
        run(make_pipeline().predict_ratings("u1", ["i1"] * 21))


# --- the other RPCs ---------------------------------------------------------------------------


class TopKRanking(FakeRanking):
    """FakeRanking as a ranking service with rater.onnx: ratings only for the rate_top_k
    highest P(interact) (stable), NaN for the others; records what it was asked."""

    def __init__(self) -> None:
        self.asked: list[tuple[int, int]] = []  # (candidates, rate_top_k)

    async def rank(
        self, user: UserState, item_indices: np.ndarray, rate_top_k: int = 0, query=None
    ) -> RankScores:
        scores = await super().rank(user, item_indices, rate_top_k)
        self.asked.append((len(item_indices), rate_top_k))
        n = len(item_indices)
        if 0 < rate_top_k < n:
            rest = np.argsort(-scores.p_interact, kind="stable")[rate_top_k:]
            scores.p_positive[rest] = np.nan
            scores.rating[rest] = np.nan
        return scores


def test_recommend_asks_ranking_for_k_ratings_and_shows_them_all():
    """Recommend k: every candidate is scored, only the k returned are rated, and those are
    the ratings of an all-candidates call; PredictRatings asks for every item's."""
    ranking = TopKRanking()
    pipeline = make_pipeline(ranking=ranking)
    answer = run(pipeline.recommend("u1", 3, UNSEEN))
    assert ranking.asked == [(8, 3)]
    want = run(make_pipeline().recommend("u1", 3, UNSEEN))
    assert ids(answer) == ids(want)
    for got, full in zip(answer.items, want.items, strict=True):
        assert got.predicted_rating == pytest.approx(full.predicted_rating, abs=1e-5)
        assert got.ranking_score == pytest.approx(full.ranking_score, abs=1e-5)
        assert 1.0 <= got.predicted_rating <= 5.0
    ratings = run(pipeline.predict_ratings("u1", ["i5", "i2", "i7"]))
    assert ranking.asked[-1] == (3, 0)
    assert all(1.0 <= r.rating <= 5.0 for r in ratings.ratings)
    # A cold user's list keeps the candidates' order: every candidate is rated.
    run(pipeline.recommend("stranger", 3, UNSEEN))
    assert ranking.asked[-1][1] == 0


def test_predict_ratings_keeps_the_request_order():
    answer = run(make_pipeline().predict_ratings("u1", ["i5", "i2", "i5"]))
    assert [r.item_id for r in answer.ratings] == ["i5", "i2", "i5"]
    assert all(1.0 <= r.rating <= 5.0 for r in answer.ratings)
    assert not answer.cold_start


def test_predict_ratings_names_unknown_items():
    with pytest.raises(NotFound, match="nope"):
        run(make_pipeline().predict_ratings("u1", ["i1", "nope"]))


def test_predict_ratings_for_an_unknown_user_is_cold_start():
    assert run(make_pipeline().predict_ratings("stranger", ["i1"])).cold_start


def test_similar_items_never_include_the_item_itself():
    answer = run(make_pipeline().similar_items("i12", 3, ALL))
    assert "i12" not in ids(answer) and len(answer.items) == 3


def test_similar_items_of_an_unknown_item_is_not_found():
    with pytest.raises(NotFound):
        run(make_pipeline().similar_items("nope", 3, ALL))


def test_recommend_tags_returns_k_tags():
    answer = run(make_pipeline().recommend_tags("stranger", 2))
    assert [t for t, _ in answer.tags] == ["Comedy", "Drama"] and answer.cold_start


def test_score_users_sends_live_activity_and_keeps_order():
    answer = run(make_pipeline().score_users(["stranger", "u1"]))
    assert [(v.user_id, v.segment) for v in answer.values] == [
        ("stranger", "NEW"),
        ("u1", "ACTIVE"),
    ]


def test_score_users_without_features_still_scores():
    answer = run(make_pipeline(features=Down()).score_users(["u1"]))
    assert [v.user_id for v in answer.values] == ["u1"]


def test_empty_feedback_is_invalid_argument():
    with pytest.raises(InvalidArgument):
        run(make_pipeline().feedback([]))


def _ignores_filters():
    """A retrieval stage that returns every item: the gateway's own filter must hold the line."""

    class IgnoresFilters(FakeRetrieval):
        async def retrieve(self, user, k, filters):
            return await super().retrieve(user, k, ALL)

    return IgnoresFilters(make_catalog())


# --- items added at runtime: ranked by their own rows ----------------------------------------


class RecordingRanking(FakeRanking):
    def __init__(self) -> None:
        self.calls: list[tuple[np.ndarray, np.ndarray]] = []  # (history, items) per call

    async def rank(
        self, user: UserState, item_indices: np.ndarray, rate_top_k: int = 0, query=None
    ) -> RankScores:
        self.calls.append((np.asarray(user.history).copy(), np.asarray(item_indices).copy()))
        return await super().rank(user, item_indices, rate_top_k)


def test_added_items_go_to_ranking_as_their_own_rows():
    """No proxy mapping: an item added at runtime (row 13, past the bundle's 12) reaches
    ranking as row 13, among the candidates, in the user's history and in PredictRatings."""
    from services.contract.added_items import NewItem

    catalog = make_catalog().extended([(13, NewItem("new", "New film", ("Comedy",)))])
    features = FakeFeatures(catalog)
    features.history["u1"] = [13, 2]

    class WithAdded(FakeRetrieval):
        async def retrieve(self, user, k, filters):
            items = np.array([13, 12, 11, 9], dtype=np.int64)
            return CandidateList(items, np.linspace(0.9, 0.1, 4).astype(np.float32))

    ranking = RecordingRanking()
    stages = Stages(features, WithAdded(catalog), ranking, FakeUserValue())
    pipeline = Pipeline(stages, catalog, SPEC, Limits(max_k=10, candidates=8, max_batch=20))
    answer = run(pipeline.recommend("u1", 4, ALL))
    history, items = ranking.calls[-1]
    assert items.tolist() == [13, 12, 11, 9] and history[0] == 13
    assert "new" in ids(answer) and answer.fallbacks == ()
    rated = run(pipeline.predict_ratings("u1", ["new", "i5"]))
    _, items = ranking.calls[-1]
    assert items.tolist() == [13, 5]
    assert rated.ratings[0].rating == pytest.approx(1 + 4 * (0.05 + 13 / 1000))


class _Logged:
    """A stage method that records when it starts and ends, awaiting once in between (what a
    network stage does)."""

    def __init__(self, stage, log: list[str], name: str, method: str) -> None:
        self._stage, self._log, self._name, self._method = stage, log, name, method

    def __getattr__(self, attr):
        inner = getattr(self._stage, attr)
        if attr != self._method:
            return inner

        async def logged(*args, **kwargs):
            self._log.append(f"{self._name} start")
            await asyncio.sleep(0)
            try:
                return await inner(*args, **kwargs)
            finally:
                self._log.append(f"{self._name} end")

        return logged


@pytest.mark.parametrize("overlap", [True, False])
def test_retrieval_and_user_value_overlap_only_when_the_stages_say_so(overlap: bool) -> None:
    """Network stages (Stages.overlap, the default) run retrieval and user value at once;
    embedded stages (EmbeddedStages.overlap = False) one after the other, with the same answer."""
    catalog = make_catalog()
    log: list[str] = []

    class Mode(Stages):
        pass

    Mode.overlap = overlap
    stages = Mode(
        FakeFeatures(catalog),
        _Logged(FakeRetrieval(catalog), log, "retrieval", "retrieve"),
        FakeRanking(),
        _Logged(FakeUserValue(), log, "uservalue", "score"),
    )
    pipeline = Pipeline(stages, catalog, SPEC, Limits(max_k=10, candidates=8, max_batch=20))
    answer = run(pipeline.recommend("u1", 3, ALL))
    assert [i.item_id for i in answer.items] == [
        i.item_id for i in run(make_pipeline().recommend("u1", 3, ALL)).items
    ]
    assert answer.user_value is not None
    sequential = ["retrieval start", "retrieval end", "uservalue start", "uservalue end"]
    assert (log != sequential) if overlap else (log == sequential)


def test_embedded_stages_do_not_overlap() -> None:
    from services.gateway.stages.inprocess import EmbeddedStages

    assert EmbeddedStages.overlap is False and Stages.overlap is True
