"""The content encoder (cold start from item text, training.content): content_encoder.onnx,
its tokenizer and projection, and the manifest section. Skipped when it is off or no item has
a title or description."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from training.data import InteractionData
from training.steps.config import TrainConfig
from training.steps.features import Features
from training.steps.runner import Steps


def has_item_text(items: pd.DataFrame) -> bool:
    """Whether any item has a title or description for the content encoder to read."""
    return any(
        name in items and items[name].fillna("").astype(str).str.len().gt(0).any()
        for name in ("title", "description")
    )


def content_encoder(
    cfg: TrainConfig,
    data: InteractionData,
    f: Features,
    item_embeddings: np.ndarray,
    out: Path,
    steps: Steps,
) -> dict[str, Any] | None:
    """Write the content encoder into out; -> the manifest section, or None (no files) when it
    is off, the items have no text, or too few items have interactions to fit the projection."""
    if not cfg.content:
        return None
    if not has_item_text(data.items):
        steps.note("content encoder: skipped (items have no title or description)")
        return None
    with steps("content encoder"):
        from training.content import build_content  # loads transformers: only when it runs

        popularity = np.bincount(f.train_ix["item_index"], minlength=f.catalog.n_items)
        return build_content(
            out,
            data.items,
            f.catalog.items.ids.tolist(),
            item_embeddings,
            popularity,
            seed=cfg.seed,
            max_items=cfg.content_items,
            parity_texts=64 if cfg.tiny else 256,
        )
