"""OnnxRanker and RankingService on a real bundle."""

from __future__ import annotations

import asyncio

import grpc
import numpy as np
import pytest

from recserve.v1 import ranking_pb2, ranking_pb2_grpc
from services.contract.errors import InvalidArgument, served_versions
from services.contract.onnx import CPU, CUDA
from services.feature.store import InMemoryFeatureStore
from services.platform import convert, metrics
from services.platform.server import create_server
from services.ranking.config import SERVICE_NAME
from services.ranking.ranker import OnnxRanker
from services.ranking.servicer import register


@pytest.fixture(scope="module")
def ranker(bundle) -> OnnxRanker:
    return OnnxRanker.from_bundle(bundle, prefer_gpu=True, max_candidates=100)


@pytest.fixture(scope="module")
def user(bundle):
    store = InMemoryFeatureStore.from_bundle(bundle)
    return store.get_user(store.users.ids[0])


def test_scores_align_with_candidates_and_stay_in_range(ranker, user):
    items = np.arange(1, 51, dtype=np.int64)
    scores = ranker.rank(user, items)
    assert scores.p_positive.shape == scores.rating.shape == scores.p_interact.shape == (50,)
    assert scores.p_positive.dtype == scores.p_interact.dtype == np.float32
    assert ((scores.p_positive >= 0) & (scores.p_positive <= 1)).all()
    # P(positive) = P(rating >= 4) from the rating model (for an item the user rates);
    # P(interact) is the ranker's, the order of the list.
    assert ranker.has_p_interact
    assert ((scores.p_interact >= 0) & (scores.p_interact <= 1)).all()
    assert ((scores.rating >= 1) & (scores.rating <= 5)).all()


def test_order_of_candidates_is_kept(ranker, user):
    items = np.arange(1, 21, dtype=np.int64)
    forward = ranker.rank(user, items)
    backward = ranker.rank(user, items[::-1].copy())
    np.testing.assert_allclose(backward.p_positive, forward.p_positive[::-1], rtol=1e-5)


def test_provider_is_reported(ranker):
    assert ranker.provider in (CUDA, CPU)


def test_empty_candidates_give_empty_scores(ranker, user):
    empty = ranker.rank(user, np.zeros(0, dtype=np.int64))
    assert empty.p_positive.size == empty.rating.size == empty.p_interact.size == 0


def test_a_ranker_onnx_without_p_interact_orders_by_p_positive(bundle, ranker, user, tmp_path):
    """An older bundle's ranker.onnx (outputs p_positive, rating only) is still served."""
    import onnx

    from services.contract.onnx import create_session
    from services.ranking.ranker import OnnxRanker

    # rater.onnx has exactly those outputs; a single-graph ranker.onnx loses its p_interact
    model = onnx.load(str(bundle.path("rater.onnx" if ranker.has_rater else "ranker.onnx")))
    keep = [o for o in model.graph.output if o.name != "p_interact"]
    del model.graph.output[:]
    model.graph.output.extend(keep)
    path = tmp_path / "ranker.onnx"
    onnx.save(model, str(path))
    session, provider = create_session(path, prefer_gpu=False)
    legacy = OnnxRanker(
        session, ranker.inputs, bundle_version="old", provider=provider, table=ranker.table
    )
    assert not legacy.has_p_interact
    items = np.arange(1, 31, dtype=np.int64)
    old, new = legacy.rank(user, items), ranker.rank(user, items)
    np.testing.assert_allclose(old.p_positive, new.p_positive, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(old.p_interact, old.p_positive)
    (batched,) = legacy.rank_prepared([legacy.prepare(user, items)])
    np.testing.assert_array_equal(batched.p_interact, batched.p_positive)


def test_rate_top_k_rates_the_top_k_by_p_interact_exactly(ranker, user):
    """rate_top_k = k: p_positive and rating for the k candidates with the highest p_interact
    (equal to the all-candidates call's, to 1e-5), NaN for the others; p_interact unchanged.
    0 or k >= N rates every candidate (PredictRatings)."""
    items = np.random.default_rng(3).permutation(np.arange(1, 81, dtype=np.int64))
    full = ranker.rank(user, items)
    assert ranker.has_rater and np.isfinite(full.rating).all()
    for k in (1, 10, 20):
        part = ranker.rank(user, items, k)
        np.testing.assert_array_equal(part.p_interact, full.p_interact)
        top = np.argsort(-full.p_interact, kind="stable")[:k]
        np.testing.assert_allclose(part.rating[top], full.rating[top], rtol=0, atol=1e-5)
        np.testing.assert_allclose(part.p_positive[top], full.p_positive[top], rtol=0, atol=1e-5)
        rest = np.setdiff1d(np.arange(items.size), top)
        assert np.isnan(part.rating[rest]).all() and np.isnan(part.p_positive[rest]).all()
    for k in (0, items.size, items.size + 5):
        every = ranker.rank(user, items, k)
        np.testing.assert_array_equal(every.rating, full.rating)


def test_two_graphs_score_as_the_single_graph_did(bundle, ranker, user):
    """ranker.onnx + rater.onnx merged back into one graph (a bundle's layout before
    rater.onnx, bench.stages.merge_ranking_graphs): same scores; a single graph rates every
    candidate whatever rate_top_k says."""
    from bench.stages import single_graph_ranker

    single = single_graph_ranker(bundle, ranker)
    assert single is not None and not single.has_rater
    items = np.arange(1, 61, dtype=np.int64)
    one, two = single.rank(user, items, 5), ranker.rank(user, items)
    for name in ("p_positive", "rating", "p_interact"):
        np.testing.assert_allclose(getattr(one, name), getattr(two, name), rtol=0, atol=1e-5)
    (batched,) = single.rank_prepared([single.prepare(user, items)], [5])
    assert np.isfinite(batched.rating).all()


def test_rank_rpc_rates_the_top_k_it_is_asked_for(ranker, user):
    request = ranking_pb2.RankRequest(
        user=convert.user_state_to_proto(user), item_indices=list(range(1, 31)), rate_top_k=4
    )
    response = _rank_over_grpc(ranker, request)
    rating = np.asarray(response.rating)
    assert np.isfinite(rating).sum() == 4 and np.isnan(np.asarray(response.p_positive)).sum() == 26
    expected = ranker.rank(user, np.arange(1, 31), 4)
    np.testing.assert_array_equal(rating, expected.rating)
    request.rate_top_k = -1
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _rank_over_grpc(ranker, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_a_negative_index_is_invalid(ranker, user):
    with pytest.raises(InvalidArgument, match="out of range"):
        ranker.rank(user, np.array([1, -1], dtype=np.int64))


def test_rows_the_ranker_does_not_hold_score_as_the_unknown_row(ranker, user):
    """A row past the ranker's table (an added item its sync has not brought yet), among the
    candidates or in the history, is scored as row 0: no error, the same scores."""
    far = ranker.n_item_rows + 10**6
    counted = {"service": "ranking"}
    before = metrics.sample("recserve_unknown_item_rows_total", counted)
    got = ranker.rank(user, np.array([far, 3], dtype=np.int64))
    assert metrics.sample("recserve_unknown_item_rows_total", counted) == before + 1
    want = ranker.rank(user, np.array([0, 3], dtype=np.int64))
    np.testing.assert_array_equal(got.p_interact, want.p_interact)
    np.testing.assert_array_equal(got.rating, want.rating)
    history = np.concatenate(([far], user.history[1:]))
    lagging = ranker.rank(type(user)(user.user_id, user.is_cold, user.user_index, user.profile,
                                     history), np.array([3], dtype=np.int64))  # fmt: skip
    history[0] = 0
    unknown = ranker.rank(type(user)(user.user_id, user.is_cold, user.user_index, user.profile,
                                     history), np.array([3], dtype=np.int64))  # fmt: skip
    np.testing.assert_array_equal(lagging.p_interact, unknown.p_interact)


def test_too_many_candidates_is_invalid(ranker, user):
    with pytest.raises(InvalidArgument, match="at most 100"):
        ranker.rank(user, np.ones(101, dtype=np.int64))


def _rank_over_grpc(ranker, request):
    async def scenario():
        server, port = await create_server(register(ranker), service_names=[SERVICE_NAME])
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                return await ranking_pb2_grpc.RankingServiceStub(channel).Rank(request)
        finally:
            await server.stop(None)

    return asyncio.run(scenario())


def test_rank_rpc_reports_scores_and_provider(ranker, user):
    request = ranking_pb2.RankRequest(
        user=convert.user_state_to_proto(user), item_indices=[3, 1, 2]
    )
    response = _rank_over_grpc(ranker, request)
    expected = ranker.rank(user, np.array([3, 1, 2]))
    np.testing.assert_allclose(response.p_positive, expected.p_positive, rtol=1e-6)
    np.testing.assert_allclose(response.p_interact, expected.p_interact, rtol=1e-6)
    np.testing.assert_allclose(response.rating, expected.rating, rtol=1e-6)
    assert response.execution_provider == ranker.provider
    assert response.bundle_version == ranker.bundle_version


def test_rank_rpc_bad_user_index_is_invalid_argument(ranker, user):
    msg = convert.user_state_to_proto(user)
    msg.user_index = 10**9
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _rank_over_grpc(ranker, ranking_pb2.RankRequest(user=msg, item_indices=[1]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_rank_rpc_refuses_a_version_it_does_not_hold(ranker, user):
    """One version per request: candidates indexed for another bundle are never scored (nor
    translated); FAILED_PRECONDITION names the versions this service serves."""
    msg = convert.user_state_to_proto(user, "some-other-version")
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _rank_over_grpc(ranker, ranking_pb2.RankRequest(user=msg, item_indices=[1]))
    assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert served_versions(caught.value.details()) == (ranker.bundle_version,)


def test_an_added_item_is_scored_by_its_own_features_not_a_proxy(bundle, ranker, user):
    """Rows past the bundle's (items added at runtime) are scored from their own tags and
    item-tower vector; another tag set or vector gives another score; a proxy (bundle) row
    still scores as before."""
    table = ranker.table
    n = table.n_base_rows
    proxy = 7
    tags = bundle.feature_spec.tags
    vector = np.asarray(table.vectors_of(np.array([proxy])), dtype=np.float32)[0]
    other = np.roll(vector, 5)
    local = OnnxRanker.from_bundle(bundle, prefer_gpu=False, max_candidates=100)
    before = local.rank(user, np.array([proxy, 3, 0], dtype=np.int64))
    not_yet = local.rank(user, np.array([n], dtype=np.int64))  # not added yet: row 0
    # same up to float rounding: ORT's kernels round by the candidate count (N = 1 vs 3)
    np.testing.assert_allclose(not_yet.p_interact, before.p_interact[2:], atol=1e-6)
    local.add_items(
        [n, n + 1, n + 2],
        [(tags[0],), (tags[1], tags[2]), (tags[0],)],
        np.stack([vector, vector, other]),
    )
    items = np.array([proxy, n, n + 1, n + 2, 3], dtype=np.int64)
    scores = local.rank(user, items)
    assert np.isfinite(scores.p_interact).all() and np.isfinite(scores.rating).all()
    np.testing.assert_allclose(scores.p_interact[[0, 4]], before.p_interact[:2], atol=1e-6)
    assert scores.p_interact[1] != scores.p_interact[0]  # its own features, not the proxy's
    assert scores.p_interact[2] != scores.p_interact[1]  # other tags
    assert scores.p_interact[3] != scores.p_interact[1]  # other vector
    (batched,) = local.rank_prepared([local.prepare(user, items)])
    np.testing.assert_allclose(batched.p_interact, scores.p_interact, atol=1e-6)
    # rater.onnx reads the same item table: an added item's rating in the top k is its own.
    rated = local.rank(user, items, 2)
    top = np.argsort(-rated.p_interact, kind="stable")[:2]
    np.testing.assert_allclose(rated.rating[top], scores.rating[top], atol=1e-5)
    beyond = local.rank(user, np.array([n + 3], dtype=np.int64))  # past the table: row 0
    np.testing.assert_array_equal(beyond.p_interact, not_yet.p_interact)  # both N = 1
    # In the history too: an added row is a valid history row, read by its own features.
    with_added = type(user)(user.user_id, user.is_cold, user.user_index, user.profile,
                            np.concatenate(([n + 1], user.history)))  # fmt: skip
    local.rank(with_added, items)


def test_a_schema_1_ranker_without_feature_inputs_is_still_served(bundle, ranker, user, tmp_path):
    """A ranker.onnx that takes item indices only (item features as constants) gets no feature
    inputs and serves the bundle's rows; adding items to it is refused, and rows past the
    bundle's (items added at runtime) score as row 0, the unknown item."""
    import warnings

    import torch

    from services.contract.errors import FailedPrecondition
    from services.contract.onnx import create_session

    class IndexOnly(torch.nn.Module):
        def forward(self, user_index, profile, history, items):
            unused = (user_index.sum() + profile.sum() + history.sum()).to(torch.float32) * 0.0
            p = torch.sigmoid(items.to(torch.float32) * 0.01 + unused)
            return p, p * 4.0 + 1.0, p

    path = tmp_path / "ranker.onnx"
    h = ranker.inputs.history_len
    args = tuple(torch.zeros((1, k), dtype=torch.int64) for k in (1, 3, h, 4))
    args = (torch.zeros(1, dtype=torch.int64), *args[1:])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
        torch.onnx.export(IndexOnly(), args, str(path), dynamo=False,
                          input_names=["user_index", "profile", "history", "items"],
                          output_names=["p_positive", "rating", "p_interact"],
                          dynamic_axes={"items": {0: "B", 1: "N"}, "user_index": {0: "B"},
                                        "profile": {0: "B"}, "history": {0: "B"}})  # fmt: skip
    session, provider = create_session(path, prefer_gpu=False)
    legacy = OnnxRanker(session, ranker.inputs, bundle_version="v1", provider=provider)
    assert legacy.features == () and legacy.table is None
    scores = legacy.rank(user, np.array([1, 2], dtype=np.int64))
    assert scores.p_interact[1] > scores.p_interact[0]
    # One graph: every candidate is rated, whatever rate_top_k asks.
    np.testing.assert_array_equal(legacy.rank(user, np.array([1, 2]), 1).rating, scores.rating)
    added = legacy.rank(user, np.array([ranker.table.n_base_rows + 2, 0], dtype=np.int64))
    assert added.p_interact[0] == added.p_interact[1]
    with pytest.raises(FailedPrecondition, match="schema_version 1"):
        legacy.add_items([ranker.table.n_base_rows], [()], np.zeros((1, ranker.table.dim)))


def test_retrievals_user_embedding_scores_as_the_ranker_tower_does(bundle, ranker, user):
    """ranker.onnx takes its retrieval score's query (user_embedding, training.export.
    QueryGiven): given retrieval's embedding of the user it scores as when it runs
    user_tower.onnx itself (a request without one: PredictRatings, the ranking service)."""
    from services.retrieval.retriever import Retriever

    assert ranker.takes_query and ranker.tower is not None
    retriever = Retriever.from_bundle(bundle)
    found = retriever.retrieve(user, 30)
    assert found.query is not None and found.query.shape == (ranker.query_dim,)
    given = ranker.rank(user, found.item_indices, 5, found.query)
    computed = ranker.rank(user, found.item_indices, 5)
    for name in ("p_interact", "p_positive", "rating"):
        np.testing.assert_allclose(
            getattr(given, name), getattr(computed, name), rtol=0, atol=1e-6, equal_nan=True
        )
    # Another embedding, other scores: the input is used.
    other = ranker.rank(user, found.item_indices, 5, -found.query)
    assert not np.allclose(other.p_interact, given.p_interact)
    with pytest.raises(InvalidArgument, match="values"):
        ranker.rank(user, found.item_indices, 5, found.query[:-1])
    with pytest.raises(InvalidArgument, match="finite"):
        ranker.rank(user, found.item_indices, 5, np.full_like(found.query, np.nan))


def test_rank_rpc_uses_the_user_embedding_it_is_given(bundle, ranker, user):
    """RankRequest.user_embedding (retrieval's, passed on by the gateway) is the ranker's query;
    empty, the service runs the user tower; a wrong size is INVALID_ARGUMENT."""
    from services.retrieval.retriever import Retriever

    query = Retriever.from_bundle(bundle).user_embedding(user)
    request = ranking_pb2.RankRequest(
        user=convert.user_state_to_proto(user), item_indices=list(range(1, 21)), rate_top_k=3
    )
    plain = _rank_over_grpc(ranker, request)
    request.user_embedding.extend((-query).tolist())  # another query: other scores
    given = _rank_over_grpc(ranker, request)
    np.testing.assert_allclose(
        given.p_interact, ranker.rank(user, np.arange(1, 21), 3, -query).p_interact, rtol=1e-6
    )
    assert not np.allclose(given.p_interact, plain.p_interact)
    del request.user_embedding[-1]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        _rank_over_grpc(ranker, request)
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
