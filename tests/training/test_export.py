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


def test_exported_io_follows_the_bundle_contract(user_tower, ranker, heldout, tmp_path) -> None:
    user = describe_onnx(export_user_tower(user_tower, tmp_path / "u.onnx", _sample(heldout)))
    rank = describe_onnx(export_ranker(ranker, tmp_path / "r.onnx", _sample(heldout)))
    h = heldout["history"].shape[1]
    assert user["inputs"] == [
        {"name": "user_index", "dtype": "int64", "shape": ["B"]},
        {"name": "profile", "dtype": "int64", "shape": ["B", 3]},
        {"name": "history", "dtype": "int64", "shape": ["B", h]},
    ]
    assert user["outputs"] == [{"name": "embedding", "dtype": "float32", "shape": ["B", 64]}]
    assert rank["inputs"][3] == {"name": "items", "dtype": "int64", "shape": ["B", "N"]}
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
    feeds = {k: heldout[k] for k in ("user_index", "profile", "history", "items")}
    names = ["p_interact", "p_positive", "rating"]
    got = dict(zip(names, session.run(names, feeds), strict=True))
    with torch.no_grad():
        args = [torch.from_numpy(feeds[k]) for k in feeds]
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
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (embedding,) = session.run(None, {k: heldout[k] for k in ("user_index", "profile", "history")})
    np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), 1.0, atol=1e-5)
