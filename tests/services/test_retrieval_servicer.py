"""RetrievalService over gRPC (real server on port 0, real bundle)."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from recserve.v1 import common_pb2, retrieval_pb2, retrieval_pb2_grpc
from services.contract.errors import served_versions
from services.contract.types import FilterSpec
from services.feature.store import InMemoryFeatureStore
from services.platform import convert, metrics
from services.platform.server import create_server
from services.retrieval.config import SERVICE_NAME
from services.retrieval.retriever import Retriever
from services.retrieval.servicer import register


@pytest.fixture(scope="module")
def retriever(bundle) -> Retriever:
    return Retriever.from_bundle(bundle, max_k=100)


@pytest.fixture(scope="module")
def user_msg(bundle) -> common_pb2.UserFeatures:
    store = InMemoryFeatureStore.from_bundle(bundle)
    return convert.user_state_to_proto(store.get_user(store.users.ids[0]), bundle.version)


def call(retriever, method: str, request):
    async def scenario():
        server, port = await create_server(register(retriever), service_names=[SERVICE_NAME])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
                return await getattr(stub, method)(request)
        finally:
            await server.stop(None)

    return asyncio.run(scenario())


def status_of(retriever, method: str, request) -> grpc.StatusCode:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        call(retriever, method, request)
    return caught.value.code()


def test_retrieve_returns_k_candidates_without_seen(retriever, user_msg):
    request = retrieval_pb2.RetrieveRequest(
        user=user_msg, k=10, filters=common_pb2.Filters(exclude_seen=True)
    )
    found = call(retriever, "Retrieve", request)
    assert len(found.item_indices) == len(found.scores) == 10
    assert not np.isin(list(found.item_indices), list(user_msg.seen)).any()
    assert found.bundle_version == retriever.bundle_version


def test_retrieve_similar_returns_neighbours(retriever):
    item_id = retriever.catalog.vocab.ids[0]
    request = retrieval_pb2.RetrieveSimilarRequest(item_id=item_id, k=5)
    found = call(retriever, "RetrieveSimilar", request)
    assert len(found.item_indices) == 5 and 1 not in found.item_indices


def test_tag_affinities_rpc(retriever, user_msg):
    request = retrieval_pb2.TagAffinitiesRequest(user=user_msg, k=3)
    response = call(retriever, "TagAffinities", request)
    assert len(response.tags) == len(response.affinities) == 3
    assert set(response.tags) <= set(retriever.index.tags)


@pytest.mark.parametrize(
    ("k", "code"),
    [
        (0, grpc.StatusCode.INVALID_ARGUMENT),
        (-5, grpc.StatusCode.INVALID_ARGUMENT),
        (101, grpc.StatusCode.RESOURCE_EXHAUSTED),
    ],
)
def test_bad_k_is_rejected(retriever, user_msg, k, code):
    request = retrieval_pb2.RetrieveRequest(user=user_msg, k=k)
    assert status_of(retriever, "Retrieve", request) == code


def test_out_of_range_history_is_invalid_argument(retriever, user_msg):
    msg = common_pb2.UserFeatures()
    msg.CopyFrom(user_msg)
    msg.history[:] = [-1]
    request = retrieval_pb2.RetrieveRequest(user=msg, k=5)
    assert status_of(retriever, "Retrieve", request) == grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("method", ["Retrieve", "TagAffinities"])
def test_a_history_row_past_the_index_reads_as_the_unknown_item(retriever, user_msg, method):
    """A row this replica does not hold (an added item its item sync has not brought yet) is
    read as row 0, not refused."""
    msg = common_pb2.UserFeatures()
    msg.CopyFrom(user_msg)
    msg.history[:] = [10**9, 2**63 - 1]
    request = (retrieval_pb2.RetrieveRequest if method == "Retrieve" else
               retrieval_pb2.TagAffinitiesRequest)(user=msg, k=5)  # fmt: skip
    counted = {"service": "retrieval"}
    before = metrics.sample("recserve_unknown_item_rows_total", counted)
    reply = call(retriever, method, request)  # no error
    assert len(reply.tags if method == "TagAffinities" else reply.item_indices) == 5
    # counted per read (TagAffinities reads the history more than once)
    assert metrics.sample("recserve_unknown_item_rows_total", counted) >= before + 2


def test_similar_unknown_item_is_not_found(retriever):
    request = retrieval_pb2.RetrieveSimilarRequest(item_id="no-such-item", k=5)
    assert status_of(retriever, "RetrieveSimilar", request) == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize("method", ["Retrieve", "TagAffinities"])
def test_a_version_it_does_not_hold_is_failed_precondition(retriever, user_msg, method):
    """One version per request: a user indexed for another bundle is refused (never read as
    this version's rows, nor translated), naming the versions this service serves."""
    other = common_pb2.UserFeatures()
    other.CopyFrom(user_msg)
    other.bundle_version = "some-other-version"
    if method == "Retrieve":
        request = retrieval_pb2.RetrieveRequest(user=other, k=5)
    else:
        request = retrieval_pb2.TagAffinitiesRequest(user=other, k=5)
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        call(retriever, method, request)
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert served_versions(caught.value.details()) == (retriever.bundle_version,)


def test_concurrent_retrieve_calls_go_through_the_shared_tower_path(bundle, retriever):
    """Concurrent Retrieve calls go through Retriever.retrieve_batched (whether they meet in
    one tower call depends on when grpc hands them to the loop; the sharing itself is tested in
    test_loop_batching), each answered with its own candidates."""
    store = InMemoryFeatureStore.from_bundle(bundle)
    users = [store.get_user(u) for u in store.users.ids.tolist()[:12]]
    unseen = common_pb2.Filters(exclude_seen=True)
    requests = [
        retrieval_pb2.RetrieveRequest(
            user=convert.user_state_to_proto(u, bundle.version), k=15, filters=unseen
        )
        for u in users
    ]
    calls0, requests0 = retriever.towers.calls, retriever.towers.requests

    async def scenario():
        server, port = await create_server(register(retriever), service_names=[SERVICE_NAME])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                stub = retrieval_pb2_grpc.RetrievalServiceStub(channel)
                for _ in range(3):  # the connection warm, then many calls at once
                    await stub.Retrieve(requests[0])
                return await asyncio.gather(*(stub.Retrieve(r) for r in requests))
        finally:
            await server.stop(None)

    answers = asyncio.run(scenario())
    assert retriever.towers.requests - requests0 == len(requests) + 3
    assert 0 < retriever.towers.calls - calls0 <= len(requests) + 3
    for user, found in zip(users, answers, strict=True):
        want = retriever.retrieve(user, 15, FilterSpec(exclude_seen=True))
        assert list(found.item_indices) == want.item_indices.tolist()
