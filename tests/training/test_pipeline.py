"""The tiny end-to-end pipeline: real retrieval quality, and the CLI's configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.__main__ import config_from_args
from training.pipeline import FULL_EPOCHS, TINY_EPOCHS, TrainConfig


def _retrieval(bundle: Path) -> dict[str, float]:
    return json.loads((bundle / "manifest.json").read_text())["metrics"]["retrieval"]


@pytest.mark.slow
def test_tiny_retrieval_recall_beats_random_by_a_wide_margin(tiny_bundle: Path) -> None:
    metrics = _retrieval(tiny_bundle)
    assert metrics["n_users"] == 943
    assert metrics["recall_at_20"] > 5 * metrics["random_recall_at_20"]
    assert metrics["recall_at_20"] > 0.1


@pytest.mark.slow
def test_tiny_retrieval_beats_most_popular(tiny_bundle: Path) -> None:
    metrics = _retrieval(tiny_bundle)
    assert metrics["recall_at_20"] > metrics["popularity_recall_at_20"]
    assert metrics["ndcg_at_10"] > metrics["popularity_ndcg_at_10"]


def test_tiny_preset_fills_epochs_but_explicit_values_win() -> None:
    tiny = TrainConfig(tiny=True, ranker_epochs=3).resolved()
    assert tiny.retrieval_epochs == TINY_EPOCHS["retrieval_epochs"]
    assert tiny.ranker_epochs == 3
    full = TrainConfig().resolved()
    assert full.retrieval_epochs == FULL_EPOCHS["retrieval_epochs"]


def test_cli_arguments_map_onto_the_config() -> None:
    config = config_from_args(
        ["train", "--data-dir", "d", "--artifacts", "a", "--tiny", "--seed", "3", "--no-progress"]
    )
    assert config.data_dir == Path("d") and config.artifacts_dir == Path("a")
    assert config.tiny and config.seed == 3 and not config.progress


@pytest.mark.slow
def test_same_seed_builds_identical_models(tiny_bundle: Path, data_dir: Path, tmp_path) -> None:
    from training.pipeline import build_bundle

    config = TrainConfig(data_dir=data_dir, artifacts_dir=tmp_path, tiny=True, progress=False)
    again = json.loads((build_bundle(config) / "manifest.json").read_text())["files"]
    first = json.loads((tiny_bundle / "manifest.json").read_text())["files"]
    for name in ("item_embeddings.npy", "user_tower.onnx", "ranker.onnx", "items.faiss"):
        assert again[name] == first[name], name


@pytest.mark.slow
def test_bundle_from_supplied_events_trains_on_exactly_them(movielens, data_dir, tmp_path) -> None:
    import pandas as pd

    from training.pipeline import build_bundle_from_events
    from training.split import temporal_split

    split = temporal_split(movielens.events, 0.2)
    config = TrainConfig(data_dir=data_dir, artifacts_dir=tmp_path, tiny=True, progress=False)
    bundle = build_bundle_from_events(split.train, movielens, config, valid=split.test)
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["data"]["split"]["n_train"] == len(split.train)
    assert manifest["metrics"]["retrieval"]["n_users"] == 943
    shipped = pd.read_parquet(bundle / "interactions.parquet")
    assert len(shipped) == len(split.train)
    assert manifest["models"]["ranker.onnx"]["parity_max_abs_error"] <= 1e-4
