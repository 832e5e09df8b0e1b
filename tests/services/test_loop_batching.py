"""services.platform.loop_batching and the embedded retrieval stage's shared user-tower calls."""

from __future__ import annotations

import asyncio
import dataclasses

import numpy as np
import pytest

from services.contract.errors import InvalidArgument
from services.contract.types import FilterSpec
from services.feature.store import InMemoryFeatureStore
from services.gateway.stages.inprocess import InProcessRetrieval
from services.platform.loop_batching import LoopBatching
from services.retrieval.retriever import Retriever


class _Doubler:
    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def one(self, x: int) -> int:
        self.batches.append([x])
        return 2 * x

    def many(self, xs: list[int]) -> list[int]:
        self.batches.append(list(xs))
        return [2 * x for x in xs]


@pytest.mark.parametrize("loop_name", ["asyncio", "uvloop"])
def test_concurrent_calls_share_one_model_call_and_a_lone_one_runs_alone(loop_name):
    factory = asyncio.new_event_loop
    if loop_name == "uvloop":
        factory = pytest.importorskip("uvloop").new_event_loop
    model = _Doubler()
    seen: list[tuple[int, int]] = []
    batching = LoopBatching(
        model.one, model.many, max_batch=4, observe=lambda n, waits: seen.append((n, len(waits)))
    )

    async def scenario():
        together = await asyncio.gather(*(batching.run(x) for x in range(10)))
        alone = await batching.run(21)
        return together, alone

    with asyncio.Runner(loop_factory=factory) as runner:
        together, alone = runner.run(scenario())
    assert together == [2 * x for x in range(10)] and alone == 42
    assert sorted(x for batch in model.batches for x in batch) == [*range(10), 21]
    assert max(len(b) for b in model.batches) == 4  # capped at max_batch
    assert len(model.batches) < 11 and model.batches[-1] == [21]
    assert (batching.calls, batching.requests) == (len(model.batches), 11)
    assert all(n == w for n, w in seen) and sum(n for n, _ in seen) == 11


def test_on_uvloop_a_servers_only_rpc_runs_at_once_and_others_still_batch(monkeypatch):
    uvloop = pytest.importorskip("uvloop")
    from services.platform import interceptors

    model = _Doubler()
    batching = LoopBatching(model.one, model.many, max_batch=4)
    yields: list[int] = []
    real_sleep = asyncio.sleep

    async def counted_sleep(delay, *args):
        yields.append(delay)
        return await real_sleep(delay, *args)

    monkeypatch.setattr(asyncio, "sleep", counted_sleep)

    async def scenario():
        # one served RPC in flight (this one): no yield, `one` at once
        monkeypatch.setattr(interceptors._IN_FLIGHT, "n", 1)
        alone = await batching.run(5)
        lone_yields = len(yields)
        # several in flight: the leader yields and concurrent calls join its batch
        monkeypatch.setattr(interceptors._IN_FLIGHT, "n", 3)
        together = await asyncio.gather(*(batching.run(x) for x in range(3)))
        return alone, lone_yields, together

    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        alone, lone_yields, together = runner.run(scenario())
    assert alone == 10 and lone_yields == 0 and model.batches[0] == [5]
    assert together == [0, 2, 4] and model.batches[1] == [0, 1, 2] and yields


def test_a_failing_model_call_fails_every_call_of_its_batch():
    def many(xs):
        raise RuntimeError("model failed")

    batching = LoopBatching(lambda x: x, many, max_batch=8)

    async def scenario():
        return await asyncio.gather(*(batching.run(x) for x in range(3)), return_exceptions=True)

    assert all(isinstance(a, RuntimeError) for a in asyncio.run(scenario()))


def test_max_batch_one_never_merges():
    model = _Doubler()
    batching = LoopBatching(model.one, model.many, max_batch=1)

    async def scenario():
        return await asyncio.gather(*(batching.run(x) for x in range(5)))

    assert asyncio.run(scenario()) == [0, 2, 4, 6, 8]
    assert all(len(b) == 1 for b in model.batches)


@pytest.fixture(scope="module")
def retriever(bundle) -> Retriever:
    return Retriever.from_bundle(bundle, max_k=200)


@pytest.fixture(scope="module")
def users(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    return [store.get_user(u) for u in store.users.ids.tolist()[:9]]


def test_embedding_users_together_equals_one_at_a_time(retriever, users):
    together = retriever.embed([retriever.tower_feeds(u) for u in users])
    alone = np.stack([retriever.user_embedding(u) for u in users])
    np.testing.assert_allclose(together, alone, atol=1e-5)


def test_embedded_retrieval_shares_tower_calls_with_the_same_answers(bundle, retriever, users):
    shared = Retriever.from_bundle(bundle, max_k=200, max_batch=4)
    stage = InProcessRetrieval(shared)
    unseen = FilterSpec(exclude_seen=True)

    async def scenario():
        return await asyncio.gather(*(stage.retrieve(u, 30, unseen) for u in users))

    answers = asyncio.run(scenario())
    assert stage.towers.requests == len(users) and stage.towers.calls < len(users)
    assert stage.towers.calls >= len(users) / 4  # at most max_batch per call
    for user, got in zip(users, answers, strict=True):
        want = retriever.retrieve(user, 30, unseen)
        np.testing.assert_array_equal(got.item_indices, want.item_indices)
        np.testing.assert_allclose(got.scores, want.scores, atol=1e-5)
        np.testing.assert_allclose(got.query, want.query, atol=1e-5)


def test_a_bad_user_fails_alone_in_a_shared_tower_call(retriever, users):
    stage = InProcessRetrieval(retriever)
    bad = dataclasses.replace(users[0], user_index=10**9)

    async def scenario():
        calls = [stage.retrieve(u, 10, FilterSpec()) for u in (users[1], bad, users[2])]
        return await asyncio.gather(*calls, return_exceptions=True)

    good1, failed, good2 = asyncio.run(scenario())
    assert isinstance(failed, InvalidArgument)
    assert len(good1) == 10 and len(good2) == 10


def test_unbatched_stage_calls_the_tower_per_request(retriever, users):
    stage = InProcessRetrieval(retriever, batched=False)
    calls = retriever.towers.calls

    async def scenario():
        return await asyncio.gather(*(stage.retrieve(u, 10, FilterSpec()) for u in users[:3]))

    assert all(len(found) == 10 for found in asyncio.run(scenario()))
    assert retriever.towers.calls == calls  # the shared path was not used
