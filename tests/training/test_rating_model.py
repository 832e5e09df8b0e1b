"""The dedicated rating model: BPMF, AutoRec, SVD++, the blend, P(rating >= 4), and its ONNX
export inside ranker.onnx (ServedRanker) with the parity check."""

from __future__ import annotations

import time

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from training.export import (
    RANKER_OUTPUTS,
    RATER_OUTPUTS,
    describe_onnx,
    export_ranker,
    parity_max_abs_error,
    with_item_features,
)
from training.models import Ranker, RankerConfig
from training.models.bpmf import BPMFConfig, fit_bpmf
from training.models.rating import (
    AutoRecNet,
    AutoRecScorer,
    FactorScorer,
    FoldedRating,
    RatingBlend,
    RatingGraph,
    ServedRanker,
    fold_rating,
)
from training.models.rating_fit import RatingConfig, RatingData, fit_autorec, fit_svdpp
from training.models.rating_train import (
    RatingTrainConfig,
    fit_blend,
    fit_positive,
    predict,
    train_rating_model,
)


def _low_rank(seed: int = 0, n_users: int = 120, n_items: int = 90, k: int = 3):
    """Ratings 1..5 from a rank-k matrix plus noise; 40% observed. -> (users, items, ratings)
    with row 0 unused on both sides (the unknown row)."""
    rng = np.random.default_rng(seed)
    u, v = rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k))
    full = np.clip(np.rint(3.2 + 0.8 * (u @ v.T) + rng.normal(0, 0.3, (n_users, n_items))), 1, 5)
    users, items = np.nonzero(rng.random((n_users, n_items)) < 0.4)
    keep = (users > 0) & (items > 0)
    return users[keep], items[keep], full[users[keep], items[keep]].astype(np.float32)


def _rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def test_bpmf_beats_item_means_on_low_rank_data() -> None:
    users, items, ratings = _low_rank()
    test = np.random.default_rng(1).random(len(ratings)) < 0.2
    start = time.perf_counter()
    res = fit_bpmf(users[~test], items[~test], ratings[~test], 120, 90,
                   BPMFConfig(factors=3, burn_in=20, samples=30))  # fmt: skip
    assert time.perf_counter() - start < 30
    pred = res.predict(users[test], items[test])
    item_mean = np.array([ratings[~test][items[~test] == i].mean() for i in items[test]])
    assert _rmse(pred, ratings[test]) < 0.8 * _rmse(item_mean, ratings[test])
    # the posterior mean is one factor model: S samples x K factors; unknown row 0 is zero
    assert res.user_factors.shape == (120, 30 * 3)
    assert not res.user_factors[0].any() and res.user_bias[0] == 0.0


def test_fit_blend_and_positive_recover_known_parameters() -> None:
    rng = np.random.default_rng(0)
    preds = rng.normal(3.5, 1.0, size=(5000, 2))
    truth = 0.3 + 0.6 * preds[:, 0] + 0.3 * preds[:, 1]
    assert np.allclose(fit_blend(preds, truth), [0.3, 0.6, 0.3], atol=1e-8)
    rating = rng.uniform(1, 5, 20000)
    liked = (rng.random(20000) < 1 / (1 + np.exp(-(2.0 * rating - 7.0)))).astype(float)
    a, b = fit_positive(rating, liked)
    assert abs(a - 2.0) < 0.15 and abs(b + 7.0) < 0.5


class _Const(torch.nn.Module):
    def __init__(self, value: float) -> None:
        super().__init__()
        self.value = value

    def forward(self, user_index, profile, history, items) -> torch.Tensor:
        return torch.full(items.shape, self.value)


def test_blend_clips_and_serves_unknown_users_the_first_model() -> None:
    blend = RatingBlend([_Const(3.0), _Const(6.0)], [0.5, 0.5, 0.5], positive=(2.0, -7.0))
    users, items = torch.tensor([0, 3]), torch.ones(2, 4, dtype=torch.long)
    zeros = torch.zeros(2, 5, dtype=torch.long)
    rating, p_pos = blend(users, zeros[:, :3], zeros, items)
    assert rating.shape == (2, 4)
    assert torch.allclose(rating[0], torch.tensor(3.0))  # unknown user: first model alone
    assert torch.allclose(rating[1], torch.tensor(5.0))  # 0.5 + 1.5 + 3.0 = 5.0, clipped at 5
    assert torch.allclose(p_pos[0], torch.sigmoid(torch.tensor(2.0 * 3.0 - 7.0)))


def test_autorec_scorer_matches_the_network() -> None:
    torch.manual_seed(0)
    net = AutoRecNet(n_users=7, hidden=5).eval()
    matrix = torch.randint(0, 6, (11, 7)).float()
    scorer = AutoRecScorer(net, matrix)
    users, items = torch.tensor([1, 6]), torch.tensor([[2, 10], [0, 4]])
    got = scorer(users, None, None, items)
    want = net(matrix).detach()
    assert torch.allclose(got, torch.stack([want[[2, 10], 1], want[[0, 4], 6]]), atol=1e-5)


@pytest.fixture(scope="module")
def small_train(ml_catalog, ml_split):
    """Users with index < 200 of the temporal train split (fast to fit)."""
    train, _ = ml_split
    return train[train["user_index"] < 200].reset_index(drop=True)


def test_nets_early_stop_on_validation(ml_catalog, small_train) -> None:
    hold = np.random.default_rng(0).random(len(small_train)) < 0.1
    fit = RatingData.build(ml_catalog, small_train[~hold])
    valid = RatingData.build(ml_catalog, small_train[hold])
    cfg = RatingConfig(factors=8, autorec_hidden=16, max_steps=40, autorec_max_steps=40)
    start = time.perf_counter()
    svd, svd_info = fit_svdpp(ml_catalog, fit, cfg, valid)
    ar, ar_info = fit_autorec(fit, cfg, valid)
    assert time.perf_counter() - start < 60
    mean = float(fit.ratings.mean())
    for model, info in ((svd, svd_info), (ar, ar_info)):
        assert 0 < info["steps"] <= 40
        pred = np.clip(predict(model, valid, fit), 1, 5)
        assert abs(_rmse(pred, valid.ratings) - info["valid_rmse"]) < 1e-4
        assert info["valid_rmse"] < _rmse(np.full(len(valid.ratings), mean), valid.ratings)


@pytest.fixture(scope="module")
def served_blend(ml_catalog, small_train):
    """(ServedRanker with a trained BPMF + AutoRec + SVD++ blend, its index inputs)."""
    cfg = RatingTrainConfig(components=("bpmf", "autorec", "svdpp"), refit=True).tiny()
    start = time.perf_counter()
    blend, info = train_rating_model(ml_catalog, small_train, cfg)
    assert time.perf_counter() - start < 90
    assert len(info["weights"]) == 4 and info["n_valid"] > 0 and "refit" in info
    spec = ml_catalog.spec
    torch.manual_seed(0)
    ranker = Ranker(ml_catalog.n_users, ml_catalog.n_items, spec.profile_cardinalities,
                    ml_catalog.item_tags, ml_catalog.item_attrs, spec.item_cardinalities,
                    RankerConfig())  # fmt: skip
    served = ServedRanker(ranker, blend).eval()
    rng = np.random.default_rng(0)
    data = RatingData.build(ml_catalog, small_train)
    users = np.r_[0, rng.integers(1, 200, 30)]
    inputs = {
        "user_index": users,
        "profile": data.profiles[users],
        "history": data.histories[users],
        "items": rng.integers(0, ml_catalog.n_items, (len(users), 17)),
    }
    return served, inputs


def test_served_ranker_exports_with_parity(ml_catalog, served_blend, tmp_path) -> None:
    served, inputs = served_blend
    ranker = served.ranker
    path = export_ranker(served, tmp_path / "ranker.onnx", {k: v[1:3] for k, v in inputs.items()})
    assert parity_max_abs_error(served, path, inputs) <= 1e-4
    assert [o["name"] for o in describe_onnx(path)["outputs"]] == list(RANKER_OUTPUTS)
    p_positive, rating, p_interact = (t.detach().numpy() for t in served(
        *(torch.from_numpy(inputs[n]) for n in ("user_index", "profile", "history", "items"))
    ))  # fmt: skip
    assert rating.min() >= 1.0 and rating.max() <= 5.0
    assert ((p_positive > 0) & (p_positive < 1)).all()
    _, _, want = ranker(*(torch.from_numpy(inputs[n])
                          for n in ("user_index", "profile", "history", "items")))  # fmt: skip
    assert np.allclose(p_interact, want.detach().numpy())  # the serving order is the ranker's
    # An item added after training (row n): SVD++ reads its own tags from the inputs, so the
    # rating of the added row follows its tags; the model's constants never see the row.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    n, t = ml_catalog.n_items, ml_catalog.item_tags.shape[1]
    feeds = with_item_features(served, {**{k: v[1:2] for k, v in inputs.items()},
                                        "items": np.array([[1, 1]])})  # fmt: skip
    feeds["items"] = np.array([[n, n]])
    feeds["item_tags"] = np.zeros((1, 2, t), np.float32)
    feeds["item_tags"][0, 0, 0] = feeds["item_tags"][0, 1, 1] = 1.0
    _, rating_added, _ = session.run(None, {i.name: feeds[i.name] for i in session.get_inputs()})
    assert np.isfinite(rating_added).all() and rating_added[0, 0] != rating_added[0, 1]


def test_served_ranker_splits_into_ranker_and_rater_graphs(
    ml_catalog, served_blend, tmp_path
) -> None:
    """ranker.onnx = p_interact only, rater.onnx = p_positive and rating: each parity-checked,
    each equal to the single graph's outputs; the rater on a subset of the candidates (what
    serving feeds it: the top k) gives those candidates' ratings of the full call."""
    served, inputs = served_blend
    graphs = served.graphs()
    assert list(graphs) == ["ranker.onnx", "rater.onnx"]
    sample = {k: v[1:3] for k, v in inputs.items()}
    paths = {name: export_ranker(m, tmp_path / name, sample) for name, m in graphs.items()}
    for name, module in graphs.items():
        assert parity_max_abs_error(module, paths[name], inputs) <= 1e-4, name
    ranker_io, rater_io = describe_onnx(paths["ranker.onnx"]), describe_onnx(paths["rater.onnx"])
    assert [o["name"] for o in ranker_io["outputs"]] == ["p_interact"]
    assert [o["name"] for o in rater_io["outputs"]] == list(RATER_OUTPUTS)
    rater_inputs = [i["name"] for i in rater_io["inputs"]]
    # SVD++ reads the history and the candidates' side features; nothing reads the vectors.
    assert rater_inputs == ["user_index", "profile", "history", "items", "item_tags",
                            "item_attrs"]  # fmt: skip
    single = export_ranker(served, tmp_path / "single.onnx", sample)
    full = with_item_features(served, inputs)

    def run(path, feeds):
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        names = [o.name for o in session.get_outputs()]
        outs = session.run(names, {i.name: feeds[i.name] for i in session.get_inputs()})
        return dict(zip(names, outs, strict=True))

    want = run(single, full)
    got = {**run(paths["ranker.onnx"], full), **run(paths["rater.onnx"], full)}
    for name in RANKER_OUTPUTS:
        np.testing.assert_allclose(got[name], want[name], rtol=0, atol=1e-5, err_msg=name)
    # The rater on 5 of the 17 candidates: the same values as in the all-candidates call.
    pick = np.argsort(-want["p_interact"], axis=1, kind="stable")[:, :5]
    subset = with_item_features(served, {**inputs, "items": np.take_along_axis(
        inputs["items"], pick, axis=1)})  # fmt: skip
    top = run(paths["rater.onnx"], subset)
    for name in RATER_OUTPUTS:
        np.testing.assert_allclose(
            top[name], np.take_along_axis(want[name], pick, axis=1), rtol=0, atol=1e-5
        )


@pytest.mark.parametrize("materialize", [False, True])
def test_a_blend_of_dot_products_is_served_folded_with_the_same_outputs(
    ml_catalog, served_blend, tmp_path, materialize
) -> None:
    """BPMF + AutoRec (both dot products) fold into one user table and one item table
    (rater.onnx: one gather per side and one matrix-vector product) or, materialized, into
    their product (one gathered value per candidate), with the blend's outputs for known users,
    the unknown user (row 0: the first model alone, unweighted) and an item added after
    training (the unknown item). A blend with SVD++ is served unfolded."""
    served, inputs = served_blend
    full = served.rating
    assert fold_rating(full) is full  # SVD++ reads the history: no fold
    blend = RatingBlend(list(full.models[:2]), full.weights[:3].tolist(),
                        tuple(full.positive.tolist()), (full.low, full.high))  # fmt: skip
    folded = fold_rating(blend, materialize)
    assert isinstance(folded, FoldedRating) and folded.materialized == materialize
    plain, graph = RatingGraph(served.ranker, blend), RatingGraph(served.ranker, folded)
    feeds = dict(inputs)
    feeds["items"] = inputs["items"].copy()
    feeds["items"][:, -1] = ml_catalog.n_items + 3  # a row added after training
    path = export_ranker(graph, tmp_path / "rater.onnx", {k: v[1:3] for k, v in inputs.items()})
    assert parity_max_abs_error(graph, path, inputs) <= 1e-4
    io = describe_onnx(path)
    assert [i["name"] for i in io["inputs"]] == ["user_index", "items"]
    ops = [n.op_type for n in onnx.load(str(path)).graph.node]
    assert ops.count("MatMul") == (0 if materialize else 1) and "ReduceSum" not in ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(list(RATER_OUTPUTS), {n: feeds[n] for n in ("user_index", "items")})
    with torch.no_grad():
        want = plain(*(torch.from_numpy(feeds[n]) for n in ("user_index", "profile", "history",
                                                            "items")))  # fmt: skip
    assert inputs["user_index"][0] == 0  # the unknown user is among them
    for name, a, b in zip(RATER_OUTPUTS, got, want, strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-5, err_msg=name)
    first = {**feeds, "items": np.where(feeds["items"] < ml_catalog.n_items, feeds["items"], 0)}
    unknown = blend.models[0](*(torch.from_numpy(first[n][:1])
                               for n in ("user_index", "profile", "history", "items")))  # fmt: skip
    np.testing.assert_allclose(got[1][0], unknown.clamp(full.low, full.high)[0].detach().numpy(),
                               rtol=0, atol=1e-5)  # fmt: skip


def test_the_rating_matrix_is_materialized_only_when_no_larger_than_its_factors() -> None:
    """MovieLens-100K's BPMF + AutoRec (944 x 1683, 1,103 wide): the product is smaller than the
    tables; a catalog with many more users and items keeps the tables."""

    def blend(n_users: int, n_items: int, k: int) -> RatingBlend:
        rng = np.random.default_rng(0)
        factors = FactorScorer(3.5, rng.normal(size=(n_users, k)), rng.normal(size=(n_items, k)),
                               np.zeros(n_users), np.zeros(n_items))  # fmt: skip
        return RatingBlend([factors], [0.0, 1.0])

    small, large = FoldedRating(blend(94, 168, 110)), FoldedRating(blend(2000, 3000, 4))
    assert small.materialized and small.matrix.shape == (94 * 168,)
    assert not large.materialized and large.items.shape == (3000, 6)


def test_a_materialized_rating_model_stays_in_ranker_onnx(ml_catalog, served_blend, tmp_path):
    """A blend whose rating matrix is no larger than its tables (here one factor model 620 wide
    over MovieLens' 944 users x 1,683 items) is one gathered value per candidate: the bundle
    keeps one graph, ranker.onnx, with every output for every candidate, equal to the
    unfolded model's."""
    served, inputs = served_blend
    rng = np.random.default_rng(1)
    n_users, n_items = ml_catalog.n_users, ml_catalog.n_items
    factors = FactorScorer(3.5, rng.normal(0, 0.05, (n_users, 620)),
                           rng.normal(0, 0.05, (n_items, 620)), rng.normal(0, 0.1, n_users),
                           rng.normal(0, 0.1, n_items))  # fmt: skip
    one = ServedRanker(served.ranker, RatingBlend([factors], [0.1, 0.95], (1.2, -4.0))).eval()
    graphs = one.graphs()
    assert list(graphs) == ["ranker.onnx"]
    assert graphs["ranker.onnx"].rating.materialized
    path = export_ranker(graphs["ranker.onnx"], tmp_path / "ranker.onnx",
                         {k: v[1:3] for k, v in inputs.items()})  # fmt: skip
    assert parity_max_abs_error(graphs["ranker.onnx"], path, inputs) <= 1e-4
    assert [o["name"] for o in describe_onnx(path)["outputs"]] == list(RANKER_OUTPUTS)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    full = with_item_features(one, inputs)
    got = session.run(list(RANKER_OUTPUTS), {i.name: full[i.name] for i in session.get_inputs()})
    with torch.no_grad():
        want = one(*(torch.from_numpy(inputs[n]) for n in ("user_index", "profile", "history",
                                                           "items")))  # fmt: skip
    for name, a, b in zip(RANKER_OUTPUTS, got, want, strict=True):
        np.testing.assert_allclose(a, b.numpy(), rtol=0, atol=1e-5, err_msg=name)


def test_without_a_rating_model_one_graph_gives_every_output(ml_catalog) -> None:
    spec = ml_catalog.spec
    ranker = Ranker(ml_catalog.n_users, ml_catalog.n_items, spec.profile_cardinalities,
                    ml_catalog.item_tags, ml_catalog.item_attrs, spec.item_cardinalities,
                    RankerConfig())  # fmt: skip
    served = ServedRanker(ranker, None)
    assert served.graphs() == {"ranker.onnx": served}
