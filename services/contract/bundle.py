"""Read and verify a versioned artifact bundle: artifacts/<version>/manifest.json + files.

Layout (written by training.bundle, documented in docs/bundle.md):
    manifest.json      schema_version, version, created_at, data, metrics, files{name: sha256},
                       feature_spec, embedding_dim, index_type, models{name: {inputs, outputs}}
    user_tower.onnx    retrieval user tower
    ranker.onnx        ranking model (P(interact); with rater.onnx, that output only)
    rater.onnx         optional: the rating model (p_positive, rating), run on the k returned
    user_value.onnx    user-value model
    items.faiss        FAISS index over item-tower embeddings (labels = item indices)
    item_embeddings.npy, user_ids.npy, item_ids.npy, tags.npy, tag_centroids.npy
    items.parquet, users.parquet, interactions.parquet
Services only read bundles, verify every checksum before use, and never unpickle.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.contract.errors import BundleError
from services.contract.features import FeatureSpec

# 2: user_tower.onnx / ranker.onnx take the item side features as inputs (docs/bundle.md,
# services.contract.item_table); 1: the graphs held them as constants and took item indices only.
# Services serve both: they feed whichever inputs a graph declares.
MANIFEST_SCHEMA_VERSION = 2
SUPPORTED_SCHEMA_VERSIONS = frozenset({1, MANIFEST_SCHEMA_VERSION})
MANIFEST_NAME = "manifest.json"
LATEST_POINTER = "LATEST"
REQUIRED_FILES = (
    "user_tower.onnx",
    "ranker.onnx",
    "user_value.onnx",
    "items.faiss",
    "item_embeddings.npy",
    "user_ids.npy",
    "item_ids.npy",
    "tags.npy",
    "tag_centroids.npy",
    "items.parquet",
    "users.parquet",
    "interactions.parquet",
)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def resolve_bundle_dir(artifacts_root: Path, version: str = "latest") -> Path:
    """artifacts/<version>, where "latest" follows the artifacts/LATEST pointer file."""
    artifacts_root = Path(artifacts_root)
    if version == "latest":
        pointer = artifacts_root / LATEST_POINTER
        if not pointer.is_file():
            raise BundleError(f"no bundle published: {pointer} is missing (run `make train`)")
        version = pointer.read_text().strip()
    path = artifacts_root / version
    if not (path / MANIFEST_NAME).is_file():
        raise BundleError(f"bundle {version!r} not found under {artifacts_root}")
    return path


ENGAGEMENT_UNIT = "interactions"  # the user-value unit of a dataset without money


@dataclass(frozen=True)
class DatasetFacts:
    """What serving needs to know of the dataset a bundle was trained on (manifest "dataset",
    "rating_model", "value"). Bundles from before the data contract: MovieLens, value in USD."""

    name: str = "movielens-100k"
    repeat: bool = False  # may already-seen items be recommended by default?
    has_ratings: bool = True
    rating_scale: tuple[float, float] = (1.0, 5.0)  # what a rating event may carry
    value_unit: str = "USD"  # a currency code, or "interactions" (engagement)
    currency: str = ""  # of prices and money in the dataset; "" when it has none

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> DatasetFacts:
        dataset = manifest.get("dataset")
        if dataset is None:
            return cls()
        scale = dataset.get("rating_scale", {})
        value = manifest.get("value", {})
        return cls(
            name=str(dataset.get("name", "")),
            repeat=bool(dataset.get("repeat", False)),
            has_ratings=manifest.get("rating_model") is not None,
            rating_scale=(float(scale.get("min", 1.0)), float(scale.get("max", 5.0))),
            value_unit=str(value.get("unit", "")),
            currency=str(dataset.get("currency") or ""),
        )

    @property
    def has_money(self) -> bool:
        return self.value_unit not in ("", ENGAGEMENT_UNIT)


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk. `path(name)` gives the location of one of its files."""

    root: Path
    manifest: dict[str, Any]

    @property
    def version(self) -> str:
        return str(self.manifest["version"])

    @property
    def feature_spec(self) -> FeatureSpec:
        return FeatureSpec.from_json(self.manifest["feature_spec"])

    @property
    def dataset(self) -> DatasetFacts:
        return DatasetFacts.from_manifest(self.manifest)

    @property
    def embedding_dim(self) -> int:
        return int(self.manifest["embedding_dim"])

    def path(self, name: str) -> Path:
        if name not in self.manifest["files"]:
            raise BundleError(f"bundle {self.version} has no file {name!r}")
        return self.root / name

    @classmethod
    def manifest_of(cls, root: Path) -> Bundle:
        """The manifest alone (version, feature spec, file list), no artifact read or checked:
        for decisions made before a full load, or that then verify the one file they read."""
        return cls(root=Path(root), manifest=_read_manifest(Path(root)))

    @classmethod
    def load(cls, root: Path, verify: bool = True) -> Bundle:
        """The manifest, and with verify (the default; services always) every file's sha256."""
        root = Path(root)
        manifest = _read_manifest(root)
        files: dict[str, str] = manifest["files"]
        if verify:
            for name, expected in files.items():
                path = root / name
                if not path.is_file():
                    raise BundleError(f"bundle file missing: {path}")
                actual = sha256_file(path)
                if actual != expected:
                    raise BundleError(f"checksum mismatch for {path}: {actual} != {expected}")
        return cls(root=root, manifest=manifest)


def _read_manifest(root: Path) -> dict[str, Any]:
    """Parse and check manifest.json: schema version and the files every bundle has."""
    manifest_path = root / MANIFEST_NAME
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise BundleError(f"cannot read {manifest_path}: {exc}") from exc
    if manifest.get("schema_version") not in SUPPORTED_SCHEMA_VERSIONS:
        raise BundleError(
            f"{manifest_path}: schema_version {manifest.get('schema_version')!r}, this "
            f"release reads {sorted(SUPPORTED_SCHEMA_VERSIONS)}"
        )
    files: dict[str, str] = manifest.get("files", {})
    missing = [name for name in REQUIRED_FILES if name not in files]
    if missing:
        raise BundleError(f"{manifest_path}: manifest lists no {missing}")
    manifest["files"] = files
    return manifest
