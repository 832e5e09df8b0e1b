"""Export + parity -> FAISS index -> tables -> manifest: the end of every bundle build
(training.pipeline and bench.synthetic_bundle).

    bundle_dir = publish_bundle(artifacts_dir, version, steps, models=..., ..., sections=...)

`sections(out, parity)` is the caller's part between the tables and the manifest: it writes
its further files into `out` (content encoder, user value), adds their parity errors to
`parity`, and returns its manifest fields (data, metrics, value, training, ...). The bundle's
own fields (feature_spec, embedding_dim, index_type, index, models) follow its "metrics".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from training.bundle import BundleWriter, write_tables
from training.encode import EncodedCatalog
from training.export import describe_onnx, export_ranker, export_user_tower, parity_max_abs_error
from training.index import FLAT_MAX_ITEMS, build_item_index, save_index, tag_centroids
from training.steps.runner import Steps

EXPORTERS = {
    "user_tower.onnx": export_user_tower,
    "ranker.onnx": export_ranker,
    "rater.onnx": export_ranker,  # training.models.rating.RatingGraph: same inputs
}


def publish_bundle(
    artifacts_dir: Path,
    version: str | None,
    steps: Steps,
    *,
    models: dict[str, nn.Module],
    parity_inputs: dict[str, np.ndarray],
    export_sample: dict[str, np.ndarray],
    item_embeddings: np.ndarray,
    catalog: EncodedCatalog,
    items: pd.DataFrame,
    users: pd.DataFrame,
    events: pd.DataFrame,
    sections: Callable[[Path, dict[str, float]], dict[str, Any]],
    flat_max_items: int = FLAT_MAX_ITEMS,
    index_queries: np.ndarray | None = None,
    index_seed: int = 0,
) -> Path:
    """Publish artifacts_dir/<version>; returns the bundle dir.

    models: {"user_tower.onnx": user tower, "ranker.onnx": ranker[, "rater.onnx": rating
    graph]} (ServedRanker.graphs() gives the ranking part), exported with
    export_sample and parity-checked (ORT vs torch) on parity_inputs, then dropped from the dict
    (emptied: a 1M-item ranker's memory is free before the index is built).
    items.faiss (training.index: flat_max_items, index_queries, index_seed), the embeddings and
    tag centroids, and the tables (items, users, `events` as interactions.parquet) follow.
    """
    with BundleWriter(artifacts_dir, version) as writer:
        out = writer.dir
        with steps("export onnx"):
            for name, model in models.items():
                EXPORTERS[name](model, out / name, export_sample)
            parity = {
                name: parity_max_abs_error(model, out / name, parity_inputs)
                for name, model in models.items()
            }
        models.clear()
        with steps("faiss index"):
            item_index = build_item_index(
                item_embeddings, flat_max_items, queries=index_queries, seed=index_seed
            )
            save_index(item_index, out / "items.faiss")
            np.save(out / "item_embeddings.npy", item_embeddings, allow_pickle=False)
            centroids = tag_centroids(item_embeddings, catalog.item_tags)
            np.save(out / "tag_centroids.npy", centroids, allow_pickle=False)
        with steps("tables"):
            write_tables(out, catalog, items, users, events)
        fields = sections(out, parity)
        bundle_fields = {
            "feature_spec": catalog.spec.to_json(),
            "embedding_dim": int(item_embeddings.shape[1]),
            "index_type": item_index.index_type,
            "index": item_index.info,
            "models": {
                name: {**describe_onnx(out / name), "parity_max_abs_error": err}
                for name, err in parity.items()
            },
        }
        with steps("publish"):
            return writer.publish(_after(fields, "metrics", bundle_fields))


def _after(fields: dict[str, Any], key: str, extra: dict[str, Any]) -> dict[str, Any]:
    """fields with extra inserted after `key` (at the end when fields has no `key`)."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        out[name] = value
        if name == key:
            out.update(extra)
    return out if key in fields else {**fields, **extra}
