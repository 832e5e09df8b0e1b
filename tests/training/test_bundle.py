"""Bundle writer: every file of docs/bundle.md, verified loading, atomic publishing."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from services.contract.bundle import (
    MANIFEST_SCHEMA_VERSION,
    REQUIRED_FILES,
    Bundle,
    resolve_bundle_dir,
)
from services.contract.errors import BundleError
from services.contract.features import FeatureSpec
from training.bundle import BundleWriter, new_version


def test_tiny_bundle_loads_with_checksum_verification(tiny_bundle: Path) -> None:
    bundle = Bundle.load(tiny_bundle, verify=True)
    assert bundle.manifest["schema_version"] == MANIFEST_SCHEMA_VERSION
    assert set(REQUIRED_FILES) <= set(bundle.manifest["files"])
    assert bundle.embedding_dim == 64
    assert isinstance(bundle.feature_spec, FeatureSpec)


def test_latest_points_at_the_published_bundle(tiny_bundle: Path) -> None:
    assert resolve_bundle_dir(tiny_bundle.parent, "latest") == tiny_bundle
    assert not [p for p in tiny_bundle.parent.iterdir() if p.name.startswith(".")]


def test_a_tampered_file_fails_verification(tiny_bundle: Path, tmp_path: Path) -> None:
    copy = shutil.copytree(tiny_bundle, tmp_path / "copy")
    with open(copy / "ranker.onnx", "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(BundleError, match="checksum mismatch"):
        Bundle.load(copy)


def test_manifest_records_metrics_models_and_timings(tiny_bundle: Path) -> None:
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    assert manifest["index_type"] == "IDMap2,Flat,IP"
    assert set(manifest["metrics"]) >= {"retrieval", "ranker", "user_value"}
    for name in ("user_tower.onnx", "ranker.onnx", "user_value.onnx"):
        assert manifest["models"][name]["parity_max_abs_error"] <= 1e-4
    assert manifest["data"]["split"]["n_test"] > 0
    assert manifest["training"]["seconds"]["train two-tower"] > 0
    days = pd.read_parquet(tiny_bundle / "interactions.parquet")["timestamp"] // 86_400
    assert manifest["value"]["as_of_day"] == int(days.max())
    assert {"horizon_weeks", "unit", "segment_thresholds"} <= set(manifest["value"])


def test_vocabularies_and_tables_agree(tiny_bundle: Path) -> None:
    bundle = Bundle.load(tiny_bundle)
    item_ids = np.load(bundle.path("item_ids.npy"), allow_pickle=False)
    items = pd.read_parquet(bundle.path("items.parquet"))
    assert items["item_id"].tolist() == item_ids.tolist()
    assert items["item_index"].tolist() == list(range(1, len(item_ids) + 1))
    assert items["popularity"].sum() == bundle.manifest["data"]["split"]["n_train"]
    users = pd.read_parquet(bundle.path("users.parquet"))
    assert users["user_id"].tolist() == np.load(bundle.path("user_ids.npy")).tolist()
    tags = np.load(bundle.path("tags.npy"), allow_pickle=False).tolist()
    assert tags == list(bundle.feature_spec.tags)
    centroids = np.load(bundle.path("tag_centroids.npy"))
    assert centroids.shape == (len(tags), bundle.embedding_dim)
    log = pd.read_parquet(bundle.path("interactions.parquet"))
    assert list(log.columns) == ["user_id", "item_id", "timestamp", "rating", "value", "event_type"]
    assert log["timestamp"].is_monotonic_increasing


def test_publish_refuses_an_incomplete_bundle_and_leaves_nothing_behind(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="missing"), BundleWriter(tmp_path, "v1") as writer:
        (writer.dir / "ranker.onnx").write_bytes(b"x")
        writer.publish({})
    assert list(tmp_path.iterdir()) == []


def test_an_existing_version_is_never_overwritten(tiny_bundle: Path) -> None:
    with pytest.raises(BundleError, match="already exists"):
        BundleWriter(tiny_bundle.parent, tiny_bundle.name)


def test_version_is_a_utc_timestamp() -> None:
    assert new_version(datetime(2026, 11, 22, 5, 15, tzinfo=UTC)) == "20261122T051500Z"
