"""One bundle version per request (docs/bundle.md): the gateway pins each request to its
pipeline's version, a backend that does not hold it refuses (FAILED_PRECONDITION naming the
versions it serves), and the gateway retries the request once, whole, on the version's pipeline
it holds, else the stage falls back. And a request reads one catalog, however many items are
added while it runs."""

from __future__ import annotations

import asyncio
import dataclasses

import grpc
import numpy as np
import pytest

from services.contract.added_items import AddedItem, NewItem
from services.contract.bundle import Bundle
from services.contract.errors import Unavailable, VersionNotServed
from services.contract.types import CandidateList, FilterSpec, RankScores, UserState
from services.gateway.config import Backend, Limits
from services.gateway.new_items import sync_catalog
from services.gateway.pipeline import Pipeline
from services.gateway.stages import Stages, WrongVersion
from services.gateway.stages.remote import RemoteFeatures, domain_error
from services.platform import metrics
from services.platform.reload import ModelHolder
from services.platform.server import create_server
from tests.services.test_gateway_pipeline import (
    SPEC,
    FakeFeatures,
    FakeRanking,
    FakeRetrieval,
    FakeUserValue,
    make_catalog,
)

V1, V2 = "test-v1", "test-v2"
LIMITS = Limits(max_k=10, candidates=8, max_batch=20)


def run(coro):
    return asyncio.run(coro)


class PinnedRetrieval(FakeRetrieval):
    """Serves the versions in `served` (current first), as RetrievalServicer does; records the
    version of every request."""

    def __init__(self, catalog, served: tuple[str, ...]) -> None:
        super().__init__(catalog)
        self.served = served
        self.asked: list[str] = []

    async def retrieve(self, user: UserState, k: int, filters: FilterSpec) -> CandidateList:
        self.asked.append(user.bundle_version)
        if user.bundle_version not in self.served:
            raise WrongVersion(f"retrieval: {user.bundle_version!r} not held", self.served)
        found = await super().retrieve(user, k, filters)
        return dataclasses.replace(found, bundle_version=user.bundle_version)


class PinnedRanking(FakeRanking):
    def __init__(self, served: tuple[str, ...]) -> None:
        self.served = served

    async def rank(
        self, user: UserState, item_indices: np.ndarray, rate_top_k: int = 0, query=None
    ) -> RankScores:
        if user.bundle_version not in self.served:
            raise WrongVersion(f"ranking: {user.bundle_version!r} not held", self.served)
        return await super().rank(user, item_indices, rate_top_k)


def gateway(retrieval_served, ranking_served=(V1, V2), current=V2):
    """A gateway holding pipelines for V1 and V2 (`current` is the live one, the other is in
    its reload grace period) over backends serving the versions given."""
    pipelines = {}
    stages = {}
    for version in (V1, V2):
        catalog = dataclasses.replace(make_catalog(), version=version)
        retrieval = PinnedRetrieval(catalog, retrieval_served)
        stages[version] = retrieval
        ranking = PinnedRanking(ranking_served)
        pipelines[version] = Pipeline(
            Stages(FakeFeatures(catalog), retrieval, ranking, FakeUserValue()),
            catalog,
            SPEC,
            LIMITS,
        )
    previous = V1 if current == V2 else V2
    holder = ModelHolder(pipelines[previous], previous, grace_s=60.0)
    holder.swap(current, pipelines[current])
    for pipeline in pipelines.values():
        pipeline.peers = holder.get
    return holder, stages


def test_a_refused_request_is_retried_on_the_previous_version_without_a_fallback():
    """The gateway switched to V2 first; retrieval still serves V1 only."""
    holder, retrieval = gateway(retrieval_served=(V1,))
    before = metrics.sample("recserve_version_retries_total")
    answer = run(holder.current.recommend("u1", 3, FilterSpec()))
    assert answer.model_version == V1 and not answer.fallbacks and len(answer.items) == 3
    assert retrieval[V2].asked == [V2] and retrieval[V1].asked == [V1]
    assert metrics.sample("recserve_version_retries_total") == before + 1


def test_a_gateway_whose_backend_moved_to_a_version_it_holds_retries_on_it():
    """The gateway went back to V1 (a rollback; V2 in its grace period); the backend serves V2."""
    holder, retrieval = gateway(retrieval_served=(V2,), current=V1)
    answer = run(holder.current.recommend("u1", 3, FilterSpec()))
    assert answer.model_version == V2 and not answer.fallbacks
    assert retrieval[V1].asked == [V1] and retrieval[V2].asked == [V2]


def test_a_version_no_pipeline_holds_falls_back_as_any_unusable_backend():
    holder, retrieval = gateway(retrieval_served=("test-v9",))
    answer = run(holder.current.recommend("u1", 3, FilterSpec()))
    assert answer.model_version == V2 and answer.fallbacks == ("retrieval_unavailable",)
    assert retrieval[V1].asked == [] and len(answer.items) == 3  # popular items, not retried


def test_a_request_is_retried_once_only():
    """Retrieval serves V1, ranking V2: each version is refused by one of them. The request
    moves to V1 once, and there ranking falls back; it never bounces back to V2."""
    holder, retrieval = gateway(retrieval_served=(V1,), ranking_served=(V2,))
    answer = run(holder.current.recommend("u1", 3, FilterSpec()))
    assert answer.model_version == V1 and answer.fallbacks == ("ranking_unavailable",)
    assert retrieval[V2].asked == [V2] and retrieval[V1].asked == [V1]


def test_calls_without_a_fallback_retry_too_or_fail_unavailable():
    holder, _ = gateway(retrieval_served=(V1, V2), ranking_served=(V1,))
    answer = run(holder.current.predict_ratings("u1", ["i1", "i2"]))
    assert answer.model_version == V1 and len(answer.ratings) == 2
    lone, _ = gateway(retrieval_served=(V1, V2), ranking_served=("test-v9",))
    with pytest.raises(Unavailable):
        run(lone.current.predict_ratings("u1", ["i1"]))


def test_an_answer_labelled_with_another_version_is_refused_too():
    """A feature service that ignores the pin answers in its own version: the request moves to
    the pipeline of that version instead of reading its rows as this version's."""

    class OldFeatures(FakeFeatures):
        async def get_user(self, user_id, recent_items=()):
            user = await super().get_user(user_id, recent_items)
            return dataclasses.replace(user, bundle_version=V1)

    holder, _ = gateway(retrieval_served=(V1, V2))
    current = holder.current
    object.__setattr__(current.stages, "features", OldFeatures(current.catalog))
    answer = run(current.recommend("u1", 3, FilterSpec()))
    assert answer.model_version == V1 and not answer.fallbacks


# --- backends: serve the pinned version or refuse --------------------------------------------


def test_the_feature_service_refuses_a_version_it_does_not_hold(tiny_bundle):
    """Over gRPC: FAILED_PRECONDITION naming the versions held; the gateway's client reads them
    back (WrongVersion.served) and a client pinned to the held version is served."""
    from services.feature.config import SERVICE_NAME
    from services.feature.servicer import register
    from services.feature.store import InMemoryFeatureStore

    bundle = Bundle.load(tiny_bundle)
    store = InMemoryFeatureStore.from_bundle(bundle)
    user_id = store.users.id_of(1)
    spec = bundle.feature_spec

    async def scenario():
        server, port = await create_server(register(store), service_names=[SERVICE_NAME])
        client = RemoteFeatures(Backend("feature", f"127.0.0.1:{port}", 5.0), spec, version="v0")
        try:
            with pytest.raises(WrongVersion) as refused:
                await client.get_user(user_id)
            with pytest.raises(WrongVersion):
                await client.get_users([user_id])
            served = await client.pinned(store.bundle_version).get_user(user_id)
            return refused.value, served
        finally:
            await client.close()
            await server.stop(None)

    refused, served = run(scenario())
    assert refused.served == (store.bundle_version,)
    assert served.bundle_version == store.bundle_version and served.known


def test_a_refusal_maps_to_wrong_version_and_other_preconditions_do_not():
    def error(details: str) -> grpc.aio.AioRpcError:
        return grpc.aio.AioRpcError(
            grpc.StatusCode.FAILED_PRECONDITION, grpc.aio.Metadata(), grpc.aio.Metadata(), details
        )

    refused = domain_error("ranking", error(str(VersionNotServed("v0", ("v2", "v1")))))
    assert isinstance(refused, WrongVersion) and refused.served == ("v2", "v1")
    other = domain_error("ranking", error("bundle has no rating model"))
    assert isinstance(other, Unavailable) and not isinstance(other, WrongVersion)


# --- one catalog per request -----------------------------------------------------------------


def test_a_request_reads_one_catalog_while_items_are_added_concurrently():
    """An added item's tags and title change (the item sync publishes a new catalog) while a
    request waits for retrieval: the request filters and titles it with the catalog it started
    with, never half of each; the next request sees the new one."""
    base = make_catalog()
    row = base.base_rows  # the first row after the bundle's items
    first = NewItem("added", title="Before", tags=("Comedy",))
    catalog = base.extended([(row, first)])
    entered, release = asyncio.Event(), asyncio.Event()

    class SlowRetrieval(FakeRetrieval):
        async def retrieve(self, user, k, filters):
            entered.set()
            await release.wait()
            items = np.array([row, 5], np.int64)
            return CandidateList(items, np.array([0.9, 0.1], np.float32))

    pipeline = Pipeline(
        Stages(FakeFeatures(catalog), SlowRetrieval(catalog), FakeRanking(), FakeUserValue()),
        catalog, SPEC, LIMITS,
    )  # fmt: skip
    comedy = FilterSpec(include_tags=("Comedy",))
    changed = dataclasses.replace(first, title="After", tags=("Drama",))

    async def scenario():
        request = asyncio.create_task(pipeline.recommend("u1", 2, comedy, rank=False))
        await entered.wait()
        assert sync_catalog(pipeline.catalogs, [AddedItem(1, row, changed)]) == 1
        release.set()
        return await request, await pipeline.recommend("u1", 2, comedy, rank=False)

    during, after = run(scenario())
    assert [(i.item_id, i.title, i.tags) for i in during.items][:1] == [
        ("added", "Before", ("Comedy",))
    ]
    assert "added" not in [i.item_id for i in after.items]  # now a Drama: filtered out
    assert pipeline.catalog.titles[row] == "After"
