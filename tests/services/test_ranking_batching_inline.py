"""RankBatching (services.ranking.batcher; an embedded gateway's ranking stage, and the ranking
service on CPU without a delay): concurrent requests share ranker calls with answers equal to
one-at-a-time ranking; one call in flight never waits; a bad request fails alone; a failing
call fails its batch; a cancelled leader still answers its followers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.contract.bundle import Bundle
from services.contract.errors import InvalidArgument
from services.contract.types import RankScores
from services.feature.store import InMemoryFeatureStore
from services.ranking.batcher import RankBatching
from services.ranking.ranker import OnnxRanker


@pytest.fixture(scope="module")
def bundle(tiny_bundle) -> Bundle:
    return Bundle.load(tiny_bundle)


@pytest.fixture(scope="module")
def ranker(bundle) -> OnnxRanker:
    return OnnxRanker.from_bundle(bundle, prefer_gpu=False)


@pytest.fixture(scope="module")
def requests(bundle, ranker):
    store = InMemoryFeatureStore.from_bundle(bundle)
    users = [store.get_user(u) for u in store.users.ids[:10].tolist()]
    users.append(store.get_user("never-seen-user"))
    rng = np.random.default_rng(1)
    n_items = ranker.inputs.n_item_rows - 1
    return [(u, rng.integers(1, n_items + 1, size=int(rng.integers(1, 80)))) for u in users]


def _same(got: RankScores, want: RankScores) -> None:
    for name in ("p_interact", "p_positive", "rating"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), atol=1e-5, rtol=0)


def test_concurrent_requests_share_calls_and_get_their_own_answers(ranker, requests):
    asks = [(0, 5, 20)[i % 3] for i in range(len(requests))]

    async def scenario():
        batching = RankBatching(ranker, max_batch=4)
        calls = (batching.rank(u, i, k) for (u, i), k in zip(requests, asks, strict=True))
        return await asyncio.gather(*calls), batching

    answers, batching = asyncio.run(scenario())
    assert batching.requests == len(requests)
    # 11 requests, at most 4 per call: 3 calls when every batch fills
    assert batching.calls == 3
    for (user, items), k, got in zip(requests, asks, answers, strict=True):
        _same(got, ranker.rank(user, items, k))


def test_one_call_in_flight_scores_at_once_without_yielding(ranker, requests):
    """Nothing else ready on the loop: the request is scored in the same step (no await that
    suspends), alone."""
    user, items = requests[0]

    async def scenario():
        batching = RankBatching(ranker, max_batch=16)
        coro = batching.rank(user, items, 5)
        try:
            coro.send(None)
        except StopIteration as done:  # finished without ever suspending
            return done.value, batching
        raise AssertionError("a lone request waited for company")

    got, batching = asyncio.run(scenario())
    assert (batching.calls, batching.requests) == (1, 1)
    _same(got, ranker.rank(user, items, 5))


def test_max_batch_one_never_merges(ranker, requests):
    async def scenario():
        batching = RankBatching(ranker, max_batch=1)
        await asyncio.gather(*(batching.rank(u, i) for u, i in requests))
        return batching

    batching = asyncio.run(scenario())
    assert batching.calls == batching.requests == len(requests)


def test_a_bad_request_fails_alone(ranker, requests):
    bad = (requests[0][0], np.array([1, -1]))  # rows past the table score as row 0, not bad

    async def scenario():
        batching = RankBatching(ranker, max_batch=8)
        calls = [batching.rank(u, i) for u, i in [*requests[:3], bad, *requests[3:5]]]
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert isinstance(answers[3], InvalidArgument)
    good = [a for j, a in enumerate(answers) if j != 3]
    for (user, items), got in zip([*requests[:3], *requests[3:5]], good, strict=True):
        _same(got, ranker.rank(user, items))


class _Failing:
    """A ranker whose batched call fails (prepare and the lone path work)."""

    def __init__(self, ranker: OnnxRanker) -> None:
        self.inner = ranker

    def prepare(self, user, items):
        return self.inner.prepare(user, items)

    def rank_one(self, prepared, rate_top_k=0):
        return self.inner.rank_one(prepared, rate_top_k)

    def rank_prepared(self, prepared, rate_top_k=None):
        raise RuntimeError("ONNX Runtime failed")


def test_a_failing_call_fails_every_request_of_its_batch(ranker, requests):
    async def scenario():
        batching = RankBatching(_Failing(ranker), max_batch=8)
        calls = [batching.rank(u, i) for u, i in requests[:4]]
        return await asyncio.gather(*calls, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert all(isinstance(a, RuntimeError) for a in answers)


def test_a_cancelled_leader_still_answers_its_followers(ranker, requests):
    async def scenario():
        batching = RankBatching(ranker, max_batch=8)
        leader = asyncio.ensure_future(batching.rank(*requests[0]))
        await asyncio.sleep(0)  # the leader has yielded: its batch is open
        followers = [asyncio.ensure_future(batching.rank(u, i)) for u, i in requests[1:4]]
        await asyncio.sleep(0)  # the followers joined
        leader.cancel()
        answers = await asyncio.gather(*followers)
        with pytest.raises(asyncio.CancelledError):
            await leader
        return answers

    answers = asyncio.run(scenario())
    for (user, items), got in zip(requests[1:4], answers, strict=True):
        _same(got, ranker.rank(user, items))


def test_a_cancelled_follower_does_not_break_the_batch(ranker, requests):
    async def scenario():
        batching = RankBatching(ranker, max_batch=8)
        tasks = [asyncio.ensure_future(batching.rank(u, i)) for u, i in requests[:4]]
        await asyncio.sleep(0)
        tasks[2].cancel()
        return await asyncio.gather(*tasks, return_exceptions=True)

    answers = asyncio.run(scenario())
    assert isinstance(answers[2], asyncio.CancelledError)
    for j in (0, 1, 3):
        _same(answers[j], ranker.rank(*requests[j]))


@pytest.mark.parametrize(
    ("env", "kind"),
    [
        ({}, "RankBatching"),  # CPU, no delay: inline, no worker
        ({"RECSERVE_RANKING_MAX_DELAY_MS": "2"}, "RankBatcher"),  # waits for company: worker
        ({"RECSERVE_RANKING_EXECUTOR": "thread"}, "RankBatcher"),  # runs on a thread
        ({"RECSERVE_RANKING_MAX_BATCH": "1"}, "NoneType"),
    ],
)
def test_the_ranking_service_batches_inline_on_cpu_without_a_worker(bundle, env, kind):
    from services.ranking.config import RankingConfig
    from services.ranking.served import RankingModel

    config = RankingConfig.from_env({"RECSERVE_RANKING_DEVICE": "cpu", **env})
    engine = RankingModel(config).from_bundle(bundle)
    assert type(engine.batcher).__name__ == kind
