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


def test_evaluation_metrics_are_read_with_their_source(tmp_path: Path) -> None:
    path = tmp_path / "eval_metrics.json"
    path.write_text(json.dumps({"rating": {"rmse": 0.88}}))
    got = evaluation_metrics(path)
    assert got is not None and got["rating"] == {"rmse": 0.88}
    assert got["source"] == str(path) and got["source_sha256"] == sha256_file(path)
    assert evaluation_metrics(tmp_path / "missing.json") is None
    assert evaluation_metrics(None) is None
    assert TrainConfig().eval_metrics == Path("reports/eval_metrics.json")
