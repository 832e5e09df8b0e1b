"""Graphs that read the history's events (history_age, history_kind): the retriever's user tower
and the ranker get them from the user's state, without an item table, aligned with the history
(an entry read as row 0 keeps its event), and the ranker's batched path stacks them. The graphs
are hand-built with onnx.helper so that their outputs are the values fed."""

from __future__ import annotations

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper  # noqa: E402

from services.contract.bundle import Bundle  # noqa: E402
from services.contract.features import EVENT_TOKENS, HISTORY_AGE_INPUT, HISTORY_KIND_INPUT  # noqa: E402
from services.contract.types import UserState  # noqa: E402
from services.ranking.ranker import OnnxRanker  # noqa: E402
from services.retrieval.retriever import Retriever  # noqa: E402

NOW = 1_800_000_000
RATING_5 = EVENT_TOKENS.index("rating 5/5")
PURCHASE = EVENT_TOKENS.index("purchase")
VIEW = EVENT_TOKENS.index("view")


def _inputs(p: int, h: int) -> list:
    return [
        helper.make_tensor_value_info("user_index", TensorProto.INT64, ["B"]),
        helper.make_tensor_value_info("profile", TensorProto.INT64, ["B", p]),
        helper.make_tensor_value_info("history", TensorProto.INT64, ["B", h]),
        helper.make_tensor_value_info(HISTORY_AGE_INPUT, TensorProto.FLOAT, ["B", h]),
        helper.make_tensor_value_info(HISTORY_KIND_INPUT, TensorProto.INT64, ["B", h]),
    ]


def _session(graph) -> ort.InferenceSession:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
    onnx.checker.check_model(model)
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])


def echo_tower(p: int, h: int) -> ort.InferenceSession:
    """embedding float32[B, 2H] = [history_age, history_kind as float]."""
    nodes = [
        helper.make_node("Cast", [HISTORY_KIND_INPUT], ["kind_f"], to=TensorProto.FLOAT),
        helper.make_node("Concat", [HISTORY_AGE_INPUT, "kind_f"], ["embedding"], axis=1),
    ]
    out = [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["B", 2 * h])]
    return _session(helper.make_graph(nodes, "echo_tower", _inputs(p, h), out))


def echo_ranker(p: int, h: int) -> ort.InferenceSession:
    """p_positive float32[B, N] = sum of history_age (every candidate), rating = sum of
    history_kind, p_interact = the candidates' indices (order checks)."""
    inputs = [*_inputs(p, h), helper.make_tensor_value_info("items", TensorProto.INT64, ["B", "N"])]
    nodes = [
        helper.make_node("Cast", [HISTORY_KIND_INPUT], ["kind_f"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["items"], ["items_f"], to=TensorProto.FLOAT),
        helper.make_node("Mul", ["items_f", "zero"], ["zeros"]),
        helper.make_node("ReduceSum", [HISTORY_AGE_INPUT, "axis"], ["age_sum"], keepdims=1),
        helper.make_node("ReduceSum", ["kind_f", "axis"], ["kind_sum"], keepdims=1),
        helper.make_node("Add", ["zeros", "age_sum"], ["p_positive"]),
        helper.make_node("Add", ["zeros", "kind_sum"], ["rating"]),
        helper.make_node("Identity", ["items_f"], ["p_interact"]),
    ]
    init = [
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("axis", TensorProto.INT64, [1], [1]),
    ]
    out = [
        helper.make_tensor_value_info(n, TensorProto.FLOAT, ["B", "N"])
        for n in ("p_positive", "rating", "p_interact")
    ]
    return _session(helper.make_graph(nodes, "echo_ranker", inputs, out, init))


@pytest.fixture(scope="module")
def base(bundle: Bundle) -> Retriever:
    return Retriever.from_bundle(bundle, encoder=None)


@pytest.fixture(scope="module")
def retriever(base: Retriever) -> Retriever:
    """The bundle's index and catalog behind the echo tower: no item table."""
    h, p = base.inputs.history_len, len(base.inputs.profile_cardinalities)
    return Retriever(
        echo_tower(p, h), base.index, base.catalog, base.inputs, base.tag_centroids,
        bundle_version="echo", provider="CPUExecutionProvider",
    )  # fmt: skip


def user(inputs, history, times, kinds, request_time: float = NOW) -> UserState:
    h = inputs.history_len
    pad = np.zeros(h, dtype=np.int64)
    padded = [np.concatenate((np.asarray(a, np.int64), pad))[:h] for a in (history, times, kinds)]
    return UserState(
        "u", True, 1, np.zeros(len(inputs.profile_cardinalities), np.int64), padded[0],
        history_times=padded[1], history_kinds=padded[2], request_time=request_time,
    )  # fmt: skip


def test_the_user_tower_gets_the_history_ages_and_kinds(retriever):
    assert retriever.table is None
    assert set(retriever.features) == {HISTORY_AGE_INPUT, HISTORY_KIND_INPUT}
    h = retriever.inputs.history_len
    state = user(
        retriever.inputs, [3, 2, 1], [NOW - 60, NOW - 86_400, 0], [RATING_5, PURCHASE, VIEW]
    )

    embedding = retriever.user_embedding(state)

    ages, kinds = embedding[:h], embedding[h:]
    np.testing.assert_array_equal(ages[:4], [60.0, 86_400.0, -1.0, -1.0])  # time 0: unknown
    np.testing.assert_array_equal(kinds[:4], [RATING_5, PURCHASE, VIEW, 0])
    assert (ages[3:] == -1).all() and (kinds[3:] == 0).all()  # padding


def test_a_state_without_recorded_events_feeds_unknowns(retriever):
    h = retriever.inputs.history_len
    embedding = retriever.user_embedding(user(retriever.inputs, [3, 2], [], []))
    np.testing.assert_array_equal(embedding, np.r_[np.full(h, -1.0), np.zeros(h)])


@pytest.mark.parametrize("bad", [-1, len(EVENT_TOKENS)])
def test_a_kind_out_of_range_is_invalid_argument(retriever, bad):
    """A caller's history_kinds (split mode: UserFeatures) past the token table is refused
    before ONNX Runtime sees it (an embedding gather there would fail as INTERNAL)."""
    from services.contract.errors import InvalidArgument

    state = user(retriever.inputs, [3, 2], [NOW - 5, NOW - 6], [VIEW, bad])
    with pytest.raises(InvalidArgument, match="history kind out of range"):
        retriever.user_embedding(state)


def test_an_entry_the_tower_reads_as_row_0_keeps_its_event(retriever):
    """A history row past the tower's (an added item it does not know) reads as row 0, the
    unknown item; the event behind it is still the user's."""
    h = retriever.inputs.history_len
    past = retriever.catalog.n_base_rows + 2
    state = user(
        retriever.inputs, [3, past, 1], [NOW - 5, NOW - 6, NOW - 7], [VIEW, PURCHASE, VIEW]
    )

    feeds = retriever.tower_feeds(state)
    embedding = retriever.user_embedding(state)

    assert feeds["history"][0, :3].tolist() == [3, 0, 1]
    np.testing.assert_array_equal(embedding[:3], [5.0, 6.0, 7.0])
    np.testing.assert_array_equal(embedding[h : h + 3], [VIEW, PURCHASE, VIEW])


def test_the_ranker_feeds_and_stacks_them_in_a_batch(base):
    inputs = base.inputs
    h, p = inputs.history_len, len(inputs.profile_cardinalities)
    ranker = OnnxRanker(
        echo_ranker(p, h), inputs, bundle_version="echo", provider="CPUExecutionProvider"
    )
    assert ranker.table is None
    one = user(inputs, [3, 2], [NOW - 10, NOW - 20], [RATING_5, PURCHASE])
    two = user(inputs, [4], [NOW - 100], [VIEW])
    pad = -(h - 2.0)  # the other entries: age -1 each

    scores = ranker.rank_prepared(
        [ranker.prepare(one, np.array([5, 6])), ranker.prepare(two, np.array([7]))]
    )

    assert scores[0].p_positive.tolist() == [30.0 + pad] * 2
    assert scores[0].rating.tolist() == [RATING_5 + PURCHASE] * 2
    assert scores[1].p_positive.tolist() == [100.0 - (h - 1.0)]
    assert scores[1].rating.tolist() == [VIEW]
    assert scores[1].p_interact.tolist() == [7.0]
    alone = ranker.rank(two, np.array([7]))
    assert alone.p_positive.tolist() == scores[1].p_positive.tolist()
