"""The evaluation splits, written to disk as TSV so other libraries can use exactly them.

Top-K (per-user temporal, training.split.temporal_split): each user's last 20% of events (at
least one) are test; validation is carved the same way out of the end of train (its last 20%
per user). `fit` = train minus valid is what tuning trains on; final models train on `train`.

    <dir>/topk/{train,test,fit,valid}.tsv      <dir>/rating/fold{0..4}/{train,test}.tsv
    <dir>/split.json                           (parameters, row counts, sha256 per file)

Rating: 5-fold random cross-validation over all ratings (seeded permutation, folds of equal
size ± 1).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.contract.bundle import sha256_file
from training.evaluate.io import read_events, write_events
from training.split import temporal_split

TEST_FRACTION = 0.2
VALID_FRACTION = 0.2
N_FOLDS = 5


@dataclass(frozen=True)
class TopKSplit:
    """Canonical event frames; train = fit ∪ valid, disjoint from test."""

    train: pd.DataFrame
    test: pd.DataFrame
    fit: pd.DataFrame
    valid: pd.DataFrame


@dataclass(frozen=True)
class Fold:
    train: pd.DataFrame
    test: pd.DataFrame


def topk_split(
    events: pd.DataFrame,
    test_fraction: float = TEST_FRACTION,
    valid_fraction: float = VALID_FRACTION,
) -> TopKSplit:
    outer = temporal_split(events, test_fraction)
    inner = temporal_split(outer.train, valid_fraction)
    return TopKSplit(outer.train, outer.test, inner.train, inner.test)


def rating_folds(events: pd.DataFrame, n_folds: int = N_FOLDS, seed: int = 0) -> list[Fold]:
    """Random K-fold over all rated events; every event is test in exactly one fold."""
    rated = events[events["rating"].notna()].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(rated))
    fold_of = np.empty(len(rated), dtype=np.int64)
    fold_of[order] = np.arange(len(rated)) % n_folds
    return [
        Fold(rated[fold_of != f].reset_index(drop=True), rated[fold_of == f].reset_index(drop=True))
        for f in range(n_folds)
    ]


def write_splits(
    root: Path, topk: TopKSplit, folds: list[Fold], params: dict[str, Any]
) -> dict[str, Any]:
    """Write every split as TSV plus split.json; -> the split.json content."""
    root = Path(root)
    files: dict[str, Path] = {}
    for name in ("train", "test", "fit", "valid"):
        files[f"topk/{name}.tsv"] = write_events(getattr(topk, name), root / "topk" / f"{name}.tsv")
    for f, fold in enumerate(folds):
        for name in ("train", "test"):
            rel = f"rating/fold{f}/{name}.tsv"
            files[rel] = write_events(getattr(fold, name), root / rel)
    meta = {
        "format": "TSV without header: user item rating timestamp",
        "topk": {
            "kind": "per_user_temporal",
            "test_fraction": params.get("test_fraction", TEST_FRACTION),
            "valid_fraction": params.get("valid_fraction", VALID_FRACTION),
            "min_test_events_per_user": 1,
        },
        "rating": {"kind": "random_kfold", "n_folds": len(folds), "seed": params.get("seed", 0)},
        **{k: v for k, v in params.items() if k not in ("test_fraction", "valid_fraction")},
        "files": {
            rel: {"rows": _count_lines(path), "sha256": sha256_file(path)}
            for rel, path in files.items()
        },
    }
    (root / "split.json").write_text(json.dumps(meta, indent=2) + "\n")
    return meta


def _count_lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def read_topk_split(root: Path) -> TopKSplit:
    root = Path(root) / "topk"
    return TopKSplit(*(read_events(root / f"{n}.tsv") for n in ("train", "test", "fit", "valid")))


def read_rating_folds(root: Path) -> list[Fold]:
    folds = []
    for fold_dir in sorted((Path(root) / "rating").glob("fold*")):
        folds.append(Fold(read_events(fold_dir / "train.tsv"), read_events(fold_dir / "test.tsv")))
    return folds
