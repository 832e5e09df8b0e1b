"""The rating model inside a published bundle: served through OnnxRanker, recorded in the
manifest (holdout metrics, training info, the last evaluation's metrics)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from services.contract.bundle import Bundle, sha256_file
from services.feature.store import InMemoryFeatureStore
from services.ranking.ranker import OnnxRanker
from training.pipeline import TrainConfig
from training.steps.config import evaluation_metrics


def test_manifest_records_rating_metrics_and_training(tiny_bundle: Path) -> None:
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    rating = manifest["metrics"]["rating"]
    assert 0.5 < rating["rmse"] < 1.5 and 0.5 < rating["auc"] <= 1.0
    assert 0.0 <= rating["ece"] <= 1.0 and rating["n_events"] > 0
    info = manifest["training"]["rating"]
    assert (
        info["config"]["components"]
        and len(info["weights"]) == len(info["config"]["components"]) + 1
    )
    assert manifest["training"]["rating_only"] is False


def test_served_rating_and_p_positive_come_from_the_rating_model(tiny_bundle: Path) -> None:
    bundle = Bundle.load(tiny_bundle)
    store = InMemoryFeatureStore.from_bundle(bundle)
    ranker = OnnxRanker.from_bundle(bundle, prefer_gpu=False)
    user = store.get_user(str(store.users.ids[1]))
    items = np.arange(1, 41, dtype=np.int64)
    scores = ranker.rank(user, items)
    assert scores.rating.min() >= 1.0 and scores.rating.max() <= 5.0
    # p_positive is a monotone (logistic) function of the rating
    order = np.argsort(scores.rating, kind="stable")
    assert (np.diff(scores.p_positive[order]) >= -1e-6).all()
    assert not np.allclose(scores.p_positive, scores.p_interact)


def test_the_rating_model_is_rater_onnx_parity_checked_beside_ranker_onnx(
    tiny_bundle: Path, tmp_path: Path
) -> None:
    """ranker.onnx gives p_interact only, rater.onnx p_positive and rating; both are in the
    manifest's models and in parity.npz, and the services' parity self-check covers rater.onnx
    (a stored output off by more than the tolerance is refused, naming it)."""
    import shutil

    import pytest

    from services.contract.errors import BundleError
    from services.contract.verify import check_parity

    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    models = manifest["models"]
    assert [o["name"] for o in models["ranker.onnx"]["outputs"]] == ["p_interact"]
    assert [o["name"] for o in models["rater.onnx"]["outputs"]] == ["p_positive", "rating"]
    assert models["rater.onnx"]["parity_max_abs_error"] <= 1e-4
    assert "rater.onnx" in manifest["files"]
    with np.load(tiny_bundle / "parity.npz") as data:
        keys = set(data.files)
    assert {"rater.onnx:out:rating", "rater.onnx:out:p_positive", "rater.onnx:in:items"} <= keys
    assert check_parity(Bundle.load(tiny_bundle)) <= 1e-4
    copy = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, copy)
    with np.load(copy / "parity.npz") as data:
        arrays = {k: data[k] for k in data.files}
    arrays["rater.onnx:out:rating"] = arrays["rater.onnx:out:rating"] + 0.01
    with open(copy / "parity.npz", "wb") as fh:
        np.savez(fh, **arrays)
    with pytest.raises(BundleError, match=r"rater\.onnx/rating"):
        check_parity(Bundle.load(copy, verify=False))


def test_evaluation_metrics_are_read_with_their_source(tmp_path: Path) -> None:
    path = tmp_path / "eval_metrics.json"
    path.write_text(json.dumps({"rating": {"rmse": 0.88}}))
    got = evaluation_metrics(path)
    assert got is not None and got["rating"] == {"rmse": 0.88}
    assert got["source"] == str(path) and got["source_sha256"] == sha256_file(path)
    assert evaluation_metrics(tmp_path / "missing.json") is None
    assert evaluation_metrics(None) is None
    assert TrainConfig().eval_metrics == Path("reports/eval_metrics.json")
