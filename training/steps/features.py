"""Split + features: the vocabularies and encoded side features (training.encode), the
train/valid events as rows, the training examples, and the held-out ranking inputs the metrics
and the ONNX parity check read."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.data import InteractionData
from training.encode import EncodedCatalog, build_catalog, index_events
from training.metrics import heldout_ranking_inputs
from training.models.train import Batch, make_examples


@dataclass
class Features:
    catalog: EncodedCatalog
    train_ix: pd.DataFrame  # `train` with user_index / item_index
    examples: Batch  # training examples (training.models.train.make_examples)
    valid_ix: pd.DataFrame | None  # None: no validation events
    # Held-out ranking inputs (items [N, 1]); the training rows when there is no validation.
    heldout: dict[str, np.ndarray]


def encode(
    data: InteractionData, train: pd.DataFrame, valid: pd.DataFrame | None, history_len: int
) -> Features:
    catalog = build_catalog(data, history_len)
    train_ix = index_events(catalog, train)
    examples = make_examples(catalog, train_ix)
    valid_ix = index_events(catalog, valid) if valid is not None and len(valid) else None
    heldout = (
        heldout_ranking_inputs(catalog, train_ix, valid_ix)
        if valid_ix is not None
        else training_rows(examples)
    )
    return Features(catalog, train_ix, examples, valid_ix, heldout)


def training_rows(examples: Batch) -> dict[str, np.ndarray]:
    """Training examples as ranking inputs (items [N, 1]): parity rows when there is no valid."""
    out = {k: v.numpy() for k, v in examples.items()}
    out["items"] = out["items"][:, None]
    return out


def subset(arrays: dict[str, np.ndarray], rows: slice | np.ndarray) -> dict[str, np.ndarray]:
    return {k: np.ascontiguousarray(v[rows]) for k, v in arrays.items()}


def parity_inputs(heldout: dict[str, np.ndarray], n_items: int, seed: int) -> dict[str, np.ndarray]:
    """Held-out rows (plus one cold-start row: unknown user, empty history) with N=20 random
    candidates, for the ORT-vs-torch parity check."""
    rng = np.random.default_rng(seed)
    rows = rng.choice(len(heldout["items"]), size=min(255, len(heldout["items"])), replace=False)
    out = subset(heldout, np.sort(rows))
    out["user_index"][0] = 0
    out["history"][0] = 0
    if "history_age" in out:  # ... and so no events
        out["history_age"][0] = -1.0
    if "history_kind" in out:
        out["history_kind"][0] = 0
    out["items"] = rng.integers(0, n_items, size=(len(rows), 20), dtype=np.int64)
    out.pop("ratings")
    return out
