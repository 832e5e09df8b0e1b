"""Bundle writer: stage every file of docs/bundle.md in a temp dir, then publish atomically.

    with BundleWriter(artifacts_dir, version) as writer:
        ... write files into writer.dir ...
        bundle_dir = writer.publish(manifest_fields)

publish() checksums every staged file into the manifest, renames the staging dir to
artifacts/<version> and only then replaces artifacts/LATEST (write temp + os.replace), so a
reader never sees a half-written bundle or a pointer to one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import pandas as pd

from services.contract.bundle import (
    LATEST_POINTER,
    MANIFEST_NAME,
    MANIFEST_SCHEMA_VERSION,
    REQUIRED_FILES,
    sha256_file,
)
from services.contract.errors import BundleError
from services.contract.features import NUMERIC, FeatureSpec, FieldSpec
from training.encode import EncodedCatalog
from training.export import PARITY_FILE, write_parity_samples


def new_version(now: datetime | None = None) -> str:
    """UTC timestamp version name, e.g. 20261122T051500Z."""
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def write_tables(
    out_dir: Path,
    catalog: EncodedCatalog,
    items: pd.DataFrame,
    users: pd.DataFrame,
    interactions: pd.DataFrame,
) -> None:
    """Vocabularies (.npy, no pickle) and the three Parquet tables of docs/bundle.md.

    items/users: the raw side tables; interactions: the training event log (canonical schema).
    """
    catalog.users.save(out_dir / "user_ids.npy")
    catalog.items.save(out_dir / "item_ids.npy")
    np.save(out_dir / "tags.npy", np.asarray(catalog.spec.tags, dtype=str), allow_pickle=False)

    item_ids = catalog.items.ids.tolist()
    side = items.assign(item_id=items["item_id"].astype(str)).set_index("item_id").reindex(item_ids)
    popularity = interactions["item_id"].astype(str).value_counts().reindex(item_ids).fillna(0)
    item_table = {
        "item_id": item_ids,
        "item_index": np.arange(1, len(item_ids) + 1, dtype=np.int64),
        "title": _text(side, "title"),
        "tags": [list(t) if isinstance(t, list | np.ndarray) else [] for t in _col(side, "tags")],
        "year": _col(side, "year", np.nan).fillna(0).astype(np.int64).to_numpy(),
        "popularity": popularity.astype(np.int64).to_numpy(),
    }
    if "description" in side:
        item_table["description"] = _text(side, "description")
    if "price" in side:
        item_table["price"] = side["price"].astype(np.float64).to_numpy()
    if "available" in side:
        item_table["available"] = side["available"].fillna(True).astype(bool).to_numpy()
    item_table.update(_attributes(side, catalog.spec.item_fields, exclude=set(item_table)))
    pd.DataFrame(item_table).to_parquet(out_dir / "items.parquet", index=False)

    user_ids = catalog.users.ids.tolist()
    profile = (
        users.assign(user_id=users["user_id"].astype(str)).set_index("user_id").reindex(user_ids)
    )
    user_table = {
        "user_id": user_ids,
        "user_index": np.arange(1, len(user_ids) + 1, dtype=np.int64),
        **_attributes(profile, catalog.spec.user_fields, exclude=set()),
    }
    pd.DataFrame(user_table).to_parquet(out_dir / "users.parquet", index=False)

    # event_type: with rating, what the feature service turns into each history entry's event
    # token (services.contract.features.event_tokens); "" when the source has none
    columns = ["user_id", "item_id", "timestamp", "rating", "value", "event_type"]
    if "event_type" not in interactions:
        interactions = interactions.assign(event_type="")
    log = interactions[columns].sort_values(["timestamp", "user_id"], kind="stable")
    log.reset_index(drop=True).to_parquet(out_dir / "interactions.parquet", index=False)


def _col(frame: pd.DataFrame, name: str, default: Any = None) -> pd.Series:
    return frame[name] if name in frame else pd.Series(default, index=frame.index, dtype=object)


def _text(frame: pd.DataFrame, name: str) -> np.ndarray:
    column = _col(frame, name, "").astype(object)
    return column.where(column.notna(), "").astype(str).to_numpy()


def _attributes(
    frame: pd.DataFrame, fields: tuple[FieldSpec, ...], exclude: set[str]
) -> dict[str, np.ndarray]:
    """The declared attributes' raw values (categorical as text, numeric as float; missing =
    "" / NaN), the columns the services encode with services.contract.features."""
    out: dict[str, np.ndarray] = {}
    for spec in fields:
        if spec.name in exclude:
            continue
        if spec.kind == NUMERIC:
            out[spec.name] = pd.to_numeric(_col(frame, spec.name), errors="coerce").to_numpy(
                np.float64
            )
        else:
            out[spec.name] = _text(frame, spec.name)
    return out


def _json_default(value: Any) -> Any:
    """numpy scalars/arrays and paths in manifest fields -> JSON types."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _parity_limits(out_dir: Path, fields: dict[str, Any]) -> dict[str, Any]:
    spec = FeatureSpec.from_json(fields["feature_spec"])
    return {
        "n_users": int(np.load(out_dir / "user_ids.npy", allow_pickle=False).size),
        "n_items": int(np.load(out_dir / "item_ids.npy", allow_pickle=False).size),
        "history_len": spec.history_len,
        "profile_cardinalities": spec.profile_cardinalities,
    }


class BundleWriter:
    """Stages a bundle under artifacts/.staging-<version>-*/ and publishes it atomically."""

    def __init__(self, artifacts_dir: Path, version: str | None = None) -> None:
        self.artifacts_dir = Path(artifacts_dir)
        self.created_at = datetime.now(UTC)
        self.version = version or new_version(self.created_at)
        self.final_dir = self.artifacts_dir / self.version
        if self.final_dir.exists():
            raise BundleError(f"bundle {self.final_dir} already exists")
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        self.dir = Path(
            tempfile.mkdtemp(prefix=f".staging-{self.version}-", dir=self.artifacts_dir)
        )

    def __enter__(self) -> BundleWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)  # no-op after a successful publish

    def publish(self, fields: dict[str, Any]) -> Path:
        """Write manifest.json (fields + schema, version, created_at, files), rename, set LATEST."""
        names = sorted(
            p.name for p in self.dir.iterdir() if p.is_file() and p.name != MANIFEST_NAME
        )
        missing = sorted(set(REQUIRED_FILES) - set(names))
        if missing:
            raise BundleError(f"cannot publish bundle {self.version}: missing {missing}")
        if PARITY_FILE not in names and "feature_spec" in fields:
            # ONNX parity samples the services re-check before a hot reload
            write_parity_samples(self.dir, _parity_limits(self.dir, fields))
            names = sorted([*names, PARITY_FILE])
        manifest = {
            "schema_version": MANIFEST_SCHEMA_VERSION,
            "version": self.version,
            "created_at": self.created_at.isoformat(timespec="seconds").replace("+00:00", "Z"),
            **fields,
            "files": {name: sha256_file(self.dir / name) for name in names},
        }
        (self.dir / MANIFEST_NAME).write_text(
            json.dumps(manifest, indent=2, default=_json_default) + "\n"
        )
        os.chmod(self.dir, 0o755)  # mkdtemp creates 0700; services may run as another user
        os.replace(self.dir, self.final_dir)
        pointer = self.artifacts_dir / f".{LATEST_POINTER}.tmp-{os.getpid()}"
        pointer.write_text(self.version + "\n")
        os.replace(pointer, self.artifacts_dir / LATEST_POINTER)
        return self.final_dir
