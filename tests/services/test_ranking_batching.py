"""Dynamic micro-batching in the ranking service (and an embedded gateway's ranking stage):
concurrent requests share one ONNX Runtime call, answers equal one-at-a-time ranking, a bad
request fails alone, batches stay bounded; RankBatching (no worker): one call in flight never
waits, a failing call fails its batch, a cancelled leader still answers its followers."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.contract.errors import InvalidArgument
from services.contract.types import RankScores
from services.feature.store import InMemoryFeatureStore
from services.platform.server import event_loop_name
from services.ranking.batcher import RankBatcher, RankBatching
from services.ranking.ranker import OnnxRanker


@pytest.fixture(scope="module")
def ranker(bundle) -> OnnxRanker:
    return OnnxRanker.from_bundle(bundle, prefer_gpu=False)


@pytest.fixture(scope="module")
def users(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    return [store.get_user(u) for u in store.users.ids[:12].tolist()] + [
        store.get_user("never-seen-user")
    ]


def _requests(ranker, users):
    rng = np.random.default_rng(0)
    n_items = ranker.inputs.n_item_rows - 1
    return [(u, rng.integers(1, n_items + 1, size=int(rng.integers(1, 60)))) for u in users]


def test_each_batched_request_is_rated_for_its_own_rate_top_k(ranker, users):
    """Requests asking for 0 (all), 3 and 10 ratings share ONNX Runtime calls; each gets
    ratings for its own top k by the p_interact it is answered with (NaN for the others),
    equal to that request's all-candidates ratings."""
    requests = _requests(ranker, users)
    asks = [(0, 3, 10)[i % 3] for i in range(len(requests))]

    async def scenario():
        batcher = RankBatcher(ranker, max_batch=8, inline=True)
        try:
            calls = (batcher.rank(u, i, k) for (u, i), k in zip(requests, asks, strict=True))
            return await asyncio.gather(*calls), batcher
        finally:
            await batcher.close()

    answers, batcher = asyncio.run(scenario())
    assert batcher.batches < len(requests)
    for (user, items), k, got in zip(requests, asks, answers, strict=True):
        want = ranker.rank(user, items)
        np.testing.assert_allclose(got.p_interact, want.p_interact, rtol=1e-4, atol=1e-5)
        rated = np.isfinite(got.rating)
        if k == 0 or k >= items.size or not ranker.has_rater:
            assert rated.all()
        else:
            top = np.argsort(-got.p_interact, kind="stable")[:k]
            assert rated.sum() == k and rated[top].all()
            assert np.isnan(got.p_positive[~rated]).all()
        np.testing.assert_allclose(got.rating[rated], want.rating[rated], rtol=0, atol=1e-5)
        np.testing.assert_allclose(got.p_positive[rated], want.p_positive[rated], rtol=0, atol=1e-5)


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_batched_answers_equal_one_at_a_time_ranking(ranker, users, inline):
    requests = _requests(ranker, users)

    async def scenario():
        batcher = RankBatcher(ranker, max_batch=8, inline=inline)
        try:
            return await asyncio.gather(*(batcher.rank(u, i) for u, i in requests)), batcher
        finally:
            await batcher.close()

    answers, batcher = asyncio.run(scenario())
    for (user, items), got in zip(requests, answers, strict=True):
        want = ranker.rank(user, items)
        assert got.p_positive.shape == items.shape
        np.testing.assert_allclose(got.p_positive, want.p_positive, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.rating, want.rating, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(got.p_interact, want.p_interact, rtol=1e-4, atol=1e-5)
    assert batcher.requests == len(requests)
    assert batcher.batches < len(requests)  # concurrent requests were merged
    assert batcher.batches >= -(-len(requests) // 8)  # never more than max_batch per call


def test_a_bad_request_fails_alone(ranker, users):
    bad_items = np.array([-1], dtype=np.int64)  # rows past the table score as row 0, not bad

    async def scenario():
        batcher = RankBatcher(ranker, max_batch=4, max_delay_s=0.002)
        try:
            return await asyncio.gather(
                batcher.rank(users[0], np.array([1, 2, 3])),
                batcher.rank(users[1], bad_items),
                batcher.rank(users[2], np.array([4, 5])),
                return_exceptions=True,
            )
        finally:
            await batcher.close()

    good1, bad, good2 = asyncio.run(scenario())
    assert isinstance(bad, InvalidArgument)
    assert good1.p_positive.size == 3 and good2.p_positive.size == 2


def test_empty_candidate_lists_in_a_batch(ranker, users):
    out = ranker.rank_prepared(
        [ranker.prepare(users[0], np.zeros(0, np.int64)), ranker.prepare(users[1], np.array([7]))]
    )
    assert out[0].p_positive.size == out[0].p_interact.size == 0
    assert out[1].p_positive.size == out[1].p_interact.size == 1


def test_warm_up_runs_every_batch_size(ranker):
    ranker.warm_up(max_batch=5)  # 1, 2, 4, 5: no error, no state change


@pytest.mark.parametrize("inline", [False, True], ids=["thread", "inline"])
def test_the_service_batches_over_grpc(bundle, ranker, users, inline):
    """Through a real server on port 0: answers match the in-process ranker."""
    import grpc

    from recserve.v1 import ranking_pb2, ranking_pb2_grpc
    from services.platform import convert
    from services.platform.server import create_server
    from services.ranking.servicer import register

    requests = _requests(ranker, users)

    async def scenario():
        batcher = RankBatcher(ranker, max_batch=8, inline=inline)
        names = ["recserve.v1.RankingService"]
        server, port = await create_server(register(ranker, batcher), port=0, service_names=names)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = ranking_pb2_grpc.RankingServiceStub(channel)
                calls = [
                    stub.Rank(ranking_pb2.RankRequest(user=convert.user_state_to_proto(u),
                                                      item_indices=i.tolist()), timeout=10)
                    for u, i in requests
                ]  # fmt: skip
                return await asyncio.gather(*calls)
        finally:
            await server.stop(0)
            await batcher.close()

    replies = asyncio.run(scenario())
    for (user, items), reply in zip(requests, replies, strict=True):
        want = ranker.rank(user, items)
        np.testing.assert_allclose(reply.p_positive, want.p_positive, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(reply.p_interact, want.p_interact, rtol=1e-4, atol=1e-5)


def test_executor_setting_picks_inline_on_cpu_and_a_thread_on_cuda():
    from services.contract.errors import ConfigError
    from services.contract.onnx import CPU, CUDA
    from services.ranking.config import RankingConfig

    auto = RankingConfig.from_env({})
    assert (auto.inline_for(CPU), auto.inline_for(CUDA)) == (True, False)
    thread = RankingConfig.from_env({"RECSERVE_RANKING_EXECUTOR": "thread"})
    assert not thread.inline_for(CPU)
    assert RankingConfig.from_env({"RECSERVE_RANKING_EXECUTOR": "inline"}).inline_for(CUDA)
    with pytest.raises(ConfigError):
        RankingConfig.from_env({"RECSERVE_RANKING_EXECUTOR": "fast"})


# --- RankBatching: the inline batcher without a worker (an embedded gateway's ranking stage,
# and the ranking service on CPU without a delay): one call in flight never waits; a failing
# call fails its batch; a cancelled leader still answers its followers


@pytest.fixture(scope="module")
def requests(ranker, users):
    rng = np.random.default_rng(1)
    n_items = ranker.inputs.n_item_rows - 1
    return [(u, rng.integers(1, n_items + 1, size=int(rng.integers(1, 80)))) for u in users[:11]]


def _same(got: RankScores, want: RankScores) -> None:
    for name in ("p_interact", "p_positive", "rating"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), atol=1e-5, rtol=0)


def test_inline_concurrent_requests_share_calls_and_get_their_own_answers(ranker, requests):
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


def test_inline_a_bad_request_fails_alone(ranker, requests):
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

    def prepare(self, user, items, query=None):
        return self.inner.prepare(user, items, query)

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


def test_on_uvloop_concurrent_requests_share_calls_and_a_lone_one_is_answered(ranker, requests):
    """uvloop keeps no `_ready` list the leader could read: it yields one loop iteration and
    goes on while each brings company; the answers are the same as one at a time."""
    uvloop = pytest.importorskip("uvloop")

    async def scenario():
        assert event_loop_name() == "uvloop"
        batching = RankBatching(ranker, max_batch=4)
        together = await asyncio.gather(*(batching.rank(u, i, 5) for u, i in requests))
        calls = batching.calls
        alone = await batching.rank(*requests[0], 5)
        return together, calls, alone, batching

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        together, calls, alone, batching = runner.run(scenario())
    assert calls < len(requests)  # merged
    assert batching.calls == calls + 1 and batching.requests == len(requests) + 1
    for (user, items), got in zip(requests, together, strict=True):
        _same(got, ranker.rank(user, items, 5))
    _same(alone, ranker.rank(*requests[0], 5))


def test_rated_top_is_the_stable_order_of_p_interact_alone_and_batched(ranker, requests):
    """RankScores.top (what the gateway reuses as its order) is the stable sort of p_interact
    cut at rate_top_k, for a lone request and for each of a batch; None when all are rated."""
    if not ranker.has_rater:
        pytest.skip("single-graph bundle: every candidate is rated")
    prepared = [ranker.prepare(u, i) for u, i in requests[:4]]
    alone = [ranker.rank_one(p, 5) for p in prepared]
    batched = ranker.rank_prepared(prepared, [5] * len(prepared))
    for one, many, (_, items) in zip(alone, batched, requests[:4], strict=True):
        for scores in (one, many):
            if items.size <= 5:
                assert scores.top is None
                continue
            want = np.argsort(-scores.p_interact, kind="stable")[:5]
            np.testing.assert_array_equal(scores.top, want)
            assert np.isfinite(scores.rating[want]).all()
    assert ranker.rank_one(prepared[0], 0).top is None
