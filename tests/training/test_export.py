"""ONNX export: contract names and dynamic axes, ORT-vs-torch parity, self-contained files."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from training.export import (
    ParityError,
    describe_onnx,
    export_ranker,
    export_user_tower,
    parity_max_abs_error,
    with_item_features,
)
from training.metrics import heldout_ranking_inputs
from training.models import Ranker, RankerConfig, TwoTowerConfig, UserTower


@pytest.fixture(scope="module")
def heldout(ml_catalog, ml_split) -> dict[str, np.ndarray]:
    """37 held-out events (history before each) with 23 candidates, plus a cold-start row."""
    data = heldout_ranking_inputs(ml_catalog, *ml_split)
    rng = np.random.default_rng(0)
    rows = np.sort(rng.choice(len(data["items"]), 37, replace=False))
    out = {k: data[k][rows].copy() for k in ("user_index", "profile", "history")}
    out["user_index"][0], out["history"][0] = 0, 0
    out["items"] = rng.integers(0, ml_catalog.n_items, (37, 23), dtype=np.int64)
    return out


def _sample(heldout: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: v[1:3, :4] if k == "items" else v[1:3] for k, v in heldout.items()}


@pytest.fixture(scope="module")
def user_tower(ml_catalog) -> UserTower:
    torch.manual_seed(0)
    spec = ml_catalog.spec
    return UserTower(ml_catalog.n_users, ml_catalog.n_items, spec.profile_cardinalities,
                     ml_catalog.item_tags, ml_catalog.item_attrs, spec.item_cardinalities,
                     TwoTowerConfig()).eval()  # fmt: skip


@pytest.fixture(scope="module")
def ranker(ml_catalog) -> Ranker:
    torch.manual_seed(0)
    spec = ml_catalog.spec
    return Ranker(ml_catalog.n_users, ml_catalog.n_items, spec.profile_cardinalities,
                  ml_catalog.item_tags, ml_catalog.item_attrs, spec.item_cardinalities,
                  RankerConfig()).eval()  # fmt: skip


def test_user_tower_onnx_matches_torch_on_held_out_inputs(user_tower, heldout, tmp_path) -> None:
    path = export_user_tower(user_tower, tmp_path / "user_tower.onnx", _sample(heldout))
    assert parity_max_abs_error(user_tower, path, heldout) <= 1e-4


def test_ranker_onnx_matches_torch_with_other_batch_and_candidate_counts(
    ranker, heldout, tmp_path
) -> None:
    path = export_ranker(ranker, tmp_path / "ranker.onnx", _sample(heldout))
    assert parity_max_abs_error(ranker, path, heldout) <= 1e-4


def test_exported_io_follows_the_bundle_contract(
    user_tower, ranker, heldout, tmp_path, ml_catalog
) -> None:
    user = describe_onnx(export_user_tower(user_tower, tmp_path / "u.onnx", _sample(heldout)))
    rank = describe_onnx(export_ranker(ranker, tmp_path / "r.onnx", _sample(heldout)))
    h = heldout["history"].shape[1]
    t, a = ml_catalog.item_tags.shape[1], ml_catalog.item_attrs.shape[1]
    history_features = [
        {"name": "history_tags", "dtype": "float32", "shape": ["B", h, t]},
        {"name": "history_attrs", "dtype": "int64", "shape": ["B", h, a]},
    ]
    assert user["inputs"] == [
        {"name": "user_index", "dtype": "int64", "shape": ["B"]},
        {"name": "profile", "dtype": "int64", "shape": ["B", 3]},
        {"name": "history", "dtype": "int64", "shape": ["B", h]},
        *history_features,
    ]
    assert user["outputs"] == [{"name": "embedding", "dtype": "float32", "shape": ["B", 64]}]
    assert rank["inputs"][3] == {"name": "items", "dtype": "int64", "shape": ["B", "N"]}
    # No retrieval score in this ranker: no item_vectors input.
    assert rank["inputs"][4:] == [
        *history_features,
        {"name": "item_tags", "dtype": "float32", "shape": ["B", "N", t]},
        {"name": "item_attrs", "dtype": "int64", "shape": ["B", "N", a]},
    ]
    assert rank["outputs"] == [
        {"name": "p_positive", "dtype": "float32", "shape": ["B", "N"]},
        {"name": "rating", "dtype": "float32", "shape": ["B", "N"]},
        {"name": "p_interact", "dtype": "float32", "shape": ["B", "N"]},
    ]


def test_ranker_onnx_has_three_outputs_each_matching_torch(ranker, heldout, tmp_path) -> None:
    """p_positive, rating and p_interact by name, each within 1e-4 of torch; p_interact is
    sigmoid(interact logit) and p_positive = p_interact * sigmoid(likes logit)."""
    path = export_ranker(ranker, tmp_path / "ranker.onnx", _sample(heldout))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == ["p_positive", "rating", "p_interact"]
    index_only = {k: heldout[k] for k in ("user_index", "profile", "history", "items")}
    full = with_item_features(ranker, index_only)
    feeds = {i.name: full[i.name] for i in session.get_inputs()}
    names = ["p_interact", "p_positive", "rating"]
    got = dict(zip(names, session.run(names, feeds), strict=True))
    with torch.no_grad():
        args = [torch.from_numpy(index_only[k]) for k in index_only]
        interact, likes, rating = ranker.logits(*args)
    want = {
        "p_interact": torch.sigmoid(interact).numpy(),
        "p_positive": (torch.sigmoid(interact) * torch.sigmoid(likes)).numpy(),
        "rating": rating.numpy(),
    }
    for name, value in want.items():
        assert got[name].shape == heldout["items"].shape, name
        np.testing.assert_allclose(got[name], value, rtol=0, atol=1e-4, err_msg=name)
    assert not np.allclose(got["p_interact"], got["p_positive"])
    assert parity_max_abs_error(ranker, path, heldout) <= 1e-4


def test_parity_check_covers_every_ranker_output(ranker, heldout, tmp_path) -> None:
    """A difference in p_interact alone is caught and named."""

    class Shifted(torch.nn.Module):
        def __init__(self, inner: Ranker) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, *args):
            p, rating, p_interact = self.inner(*args)
            return p, rating, p_interact + 0.01

    path = export_ranker(ranker, tmp_path / "ranker.onnx", _sample(heldout))
    with pytest.raises(ParityError, match="in p_interact"):
        parity_max_abs_error(Shifted(ranker), path, heldout)


def test_parity_check_raises_when_onnx_and_torch_disagree(ranker, heldout, tmp_path) -> None:
    model = copy.deepcopy(ranker)
    path = export_ranker(model, tmp_path / "ranker.onnx", _sample(heldout))
    with torch.no_grad():
        model.global_bias.add_(0.5)  # torch changes after export
    with pytest.raises(ParityError, match="max abs error"):
        parity_max_abs_error(model, path, heldout)


def test_onnx_file_is_self_contained(user_tower, heldout, tmp_path) -> None:
    out = tmp_path / "export"
    out.mkdir()
    path = export_user_tower(user_tower, out / "user_tower.onnx", _sample(heldout))
    assert [p.name for p in out.iterdir()] == ["user_tower.onnx"]
    model = onnx.load(str(path), load_external_data=False)
    assert all(t.data_location != onnx.TensorProto.EXTERNAL for t in model.graph.initializer)
    assert path.stat().st_size < 2**20  # the item tables are inputs, not constants
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    full = with_item_features(user_tower, heldout)
    (embedding,) = session.run(None, {i.name: full[i.name] for i in session.get_inputs()})
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)


def _with_retrieval(ml_catalog, tags: np.ndarray, attrs: np.ndarray, cards) -> Ranker:
    from training.models.ranker import RetrievalScore

    torch.manual_seed(0)
    spec = ml_catalog.spec
    n_users, n_items = ml_catalog.n_users, ml_catalog.n_items
    tower = UserTower(n_users, n_items, spec.profile_cardinalities, tags, attrs, cards,
                      TwoTowerConfig())  # fmt: skip
    vectors = np.random.default_rng(1).normal(size=(n_items, 64)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    vectors[0] = 0.0
    config = RankerConfig(repeat_features=True)
    return Ranker(n_users, n_items, spec.profile_cardinalities, tags, attrs, cards, config,
                  RetrievalScore(tower, vectors)).eval()  # fmt: skip


def test_exported_ranker_scores_an_added_item_by_its_own_features(
    ml_catalog, heldout, tmp_path
) -> None:
    """A row past the trained tables (an item added at runtime) is accepted, read as the
    unknown id, and scored from its tags / attributes / vector: other features, other score;
    no proxy row involved. Trained rows score as the training-time model does."""
    ranker = _with_retrieval(
        ml_catalog, ml_catalog.item_tags, ml_catalog.item_attrs, ml_catalog.spec.item_cardinalities
    )
    path = export_ranker(ranker, tmp_path / "ranker.onnx", _sample(heldout))
    names = [i.name for i in ort.InferenceSession(str(path)).get_inputs()]
    # The frozen retrieval score's user-tower query is an input (QueryGiven), the tower's
    # output: parity (ORT fed the tower's output vs torch running the tower) holds.
    assert names[4:] == ["history_tags", "history_attrs", "item_tags", "item_attrs",
                         "item_vectors", "user_embedding"]  # fmt: skip
    assert parity_max_abs_error(ranker, path, heldout) <= 1e-4
    n = ml_catalog.n_items
    user = {k: heldout[k][1:2] for k in ("user_index", "profile", "history")}
    trained = 5
    items = np.array([[trained, n, n + 7]], dtype=np.int64)  # two added rows
    feeds = with_item_features(ranker, {**user, "items": np.array([[trained] * 3])})
    feeds["items"] = items
    t = ml_catalog.item_tags.shape[1]
    feeds["item_tags"] = feeds["item_tags"].copy()
    other_tag = (np.argmax(feeds["item_tags"][0, 1]) + 1) % t
    feeds["item_tags"][0, 2] = np.eye(t, dtype=np.float32)[other_tag]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    p, rating, p_interact = session.run(None, {k: feeds[k] for k in names})
    assert np.isfinite(p).all() and np.isfinite(rating).all()
    assert p_interact[0, 1] != p_interact[0, 0]  # unknown id: not the trained row
    assert p_interact[0, 2] != p_interact[0, 1]  # other tags: other score
    with torch.no_grad():
        want = ranker(*(torch.from_numpy(v) for v in user.values()), torch.tensor([[trained]]))
    np.testing.assert_allclose(p_interact[0, 0], want[2][0, 0].numpy(), atol=1e-5)
    # An added row in the history is a real row too: the buy-again features match it.
    hist = feeds["history"].copy()
    hist[0, 0] = n
    again = {**feeds, "history": hist}
    again["history_tags"] = feeds["history_tags"].copy()
    again["history_tags"][0, 0] = feeds["item_tags"][0, 1]
    again["history_attrs"] = feeds["history_attrs"].copy()
    again["history_attrs"][0, 0] = feeds["item_attrs"][0, 1]
    del again["user_embedding"]  # the other history's tower output, computed anew
    again = with_item_features(ranker, again)
    _, _, p_again = session.run(None, {k: again[k] for k in names})
    assert p_again[0, 1] != p_interact[0, 1]
    torch_out = parity_max_abs_error(ranker, path, again)  # torch gets the features too
    assert torch_out <= 1e-4


def test_empty_tag_and_attribute_tables_export_without_those_inputs(
    ml_catalog, heldout, tmp_path
) -> None:
    n = ml_catalog.n_items
    tags, attrs = np.zeros((n, 0), np.float32), np.zeros((n, 0), np.int64)
    ranker = _with_retrieval(ml_catalog, tags, attrs, ())
    tower = ranker.retrieval.user_tower
    rank = describe_onnx(export_ranker(ranker, tmp_path / "r.onnx", _sample(heldout)))
    user = describe_onnx(export_user_tower(tower, tmp_path / "u.onnx", _sample(heldout)))
    assert [i["name"] for i in rank["inputs"]] == [
        "user_index", "profile", "history", "items", "item_vectors", "user_embedding"
    ]  # fmt: skip
    assert [i["name"] for i in user["inputs"]] == ["user_index", "profile", "history"]
    assert parity_max_abs_error(ranker, tmp_path / "r.onnx", heldout) <= 1e-4
    assert parity_max_abs_error(tower, tmp_path / "u.onnx", heldout) <= 1e-4
    # What serving feeds: exactly the declared inputs, from an item table with T = A = 0.
    from services.contract.item_table import ItemTable, feature_inputs

    session = ort.InferenceSession(str(tmp_path / "r.onnx"), providers=["CPUExecutionProvider"])
    table = ItemTable(tags, attrs, ranker.retrieval.item_embeddings.numpy())
    table = table.with_added([n], [()], np.ones((1, 64), np.float32) / 8.0)
    items = np.array([[1, 2, n]], dtype=np.int64)
    feeds = {k: heldout[k][1:2] for k in ("user_index", "profile", "history")}
    feeds["items"] = items
    feeds.update(table.feeds(feature_inputs(session), history=feeds["history"], items=items))
    with torch.no_grad():  # the user tower's output: retrieval's embedding of the user
        query = tower(*(torch.from_numpy(feeds[k]) for k in ("user_index", "profile", "history")))
    feeds["user_embedding"] = query.numpy()
    assert set(feeds) == {i.name for i in session.get_inputs()}
    p_positive, _, _ = session.run(None, feeds)
    assert p_positive.shape == (1, 3) and np.isfinite(p_positive).all()
