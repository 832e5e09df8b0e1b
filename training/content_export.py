"""The content encoder as one ONNX graph (services.contract.content's contract), exported,
parity-checked against torch on real item texts, and written into a bundle.

    content_encoder.onnx    input_ids, attention_mask int64[N, T] -> embedding float32[N, D]
    content_tokenizer.json  the model package's tokenizer.json (serving adds truncation/padding)
    content_projection.npz  weight float32[384, D], bias float32[D]: the fitted projection, so
                            the text -> tower mapping can be audited or re-applied without BERT

Imports torch at module level: training.content imports this lazily. It knows nothing of
training.content (the layer above): the model and projection are whatever has their fields.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import onnxruntime as ort
import torch
from torch import nn
from torch.nn import functional as F

from services.contract.content import (
    CONTENT_ENCODER_FILE,
    CONTENT_TOKENIZER_FILE,
    MAX_TOKENS,
    tokenize,
)
from training.export import _export

CONTENT_PROJECTION_FILE = "content_projection.npz"
INPUTS = ("input_ids", "attention_mask")
OUTPUTS = ("embedding",)
# BERT in float32 through ORT vs torch: ~1e-6 per coordinate of a unit vector.
PARITY_MIN_COSINE = 0.999
PARITY_MAX_ABS = 1e-3


class Projection(Protocol):
    """text embedding [.., 384] -> [.., D] (training.content.Projection)."""

    @property
    def weight(self) -> np.ndarray: ...  # [384, D]

    @property
    def bias(self) -> np.ndarray: ...  # [D]


class TextModel(Protocol):
    """The sentence encoder (training.content.TextModel)."""

    @property
    def bert(self) -> nn.Module: ...

    @property
    def tokenizer(self) -> Any: ...  # the serving tokenizer (services.contract.content)

    @property
    def path(self) -> Path: ...  # the model package's directory (its tokenizer.json)


class ContentGraph(nn.Module):
    """input_ids, attention_mask -> BERT (token_type_ids zeros) -> attention-masked mean ->
    L2 (as sentence-transformers' Pooling + Normalize) -> [Linear -> L2] (None: the text
    embedding itself)."""

    def __init__(self, bert: nn.Module, projection: Projection | None) -> None:
        super().__init__()
        self.bert = bert
        self.projection: nn.Linear | None = None
        if projection is not None:
            linear = nn.Linear(projection.weight.shape[0], projection.weight.shape[1])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(projection.weight.T)))
                linear.bias.copy_(torch.from_numpy(np.ascontiguousarray(projection.bias)))
            self.projection = linear

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.bert(
            input_ids=input_ids,
            attention_mask=attention_mask,
            token_type_ids=torch.zeros_like(input_ids),
        ).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        text = F.normalize(pooled, p=2.0, dim=1)
        if self.projection is None:
            return text
        return F.normalize(self.projection(text), p=2.0, dim=1)


def export_content_encoder(graph: nn.Module, path: Path, sample: dict[str, np.ndarray]) -> Path:
    """The training.export conventions (TorchScript exporter, opset 17, onnx.checker)."""
    axes = {name: {0: "N", 1: "T"} for name in INPUTS}
    axes["embedding"] = {0: "N"}
    return _export(graph, path, sample, INPUTS, OUTPUTS, axes)


@torch.no_grad()
def content_parity(
    graph: nn.Module, path: Path, tokenizer: Any, texts: Sequence[str], batch_size: int = 64
) -> dict[str, float]:
    """ORT (CPU) vs torch on real texts tokenized by the serving tokenizer: min and mean cosine,
    max abs difference. The graph's padding and truncation must not change the answer."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got, want = [], []
    for start in range(0, len(texts), batch_size):
        feeds = tokenize(tokenizer, texts[start : start + batch_size])
        (out,) = session.run(list(OUTPUTS), feeds)
        got.append(out)
        want.append(graph(*(torch.from_numpy(feeds[k]) for k in INPUTS)).numpy())
    a, b = np.concatenate(got), np.concatenate(want)
    cosine = np.sum(a * b, axis=1) / np.maximum(
        np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12
    )
    return {
        "min_cosine": float(cosine.min()),
        "mean_cosine": float(cosine.mean()),
        "max_abs_error": float(np.max(np.abs(a - b))),
        "n_texts": len(texts),
    }


def write_content_encoder(
    out_dir: Path,
    model: TextModel,
    projection: Projection,
    parity_texts: Sequence[str],
) -> dict[str, Any]:
    """Export the graph and copy the tokenizer into out_dir; -> the manifest's export facts.
    Raises training.export.ParityError when ORT and torch disagree on the real texts."""
    from training.export import ParityError

    start = time.perf_counter()
    out_dir = Path(out_dir)
    graph = ContentGraph(model.bert, projection).eval()
    sample = tokenize(model.tokenizer, list(parity_texts[:2]))
    path = export_content_encoder(graph, out_dir / CONTENT_ENCODER_FILE, sample)
    shutil.copyfile(model.path / "tokenizer.json", out_dir / CONTENT_TOKENIZER_FILE)
    with open(out_dir / CONTENT_PROJECTION_FILE, "wb") as fh:
        np.savez(fh, weight=projection.weight, bias=projection.bias)
    parity = content_parity(graph, path, model.tokenizer, parity_texts)
    if parity["min_cosine"] < PARITY_MIN_COSINE or not parity["max_abs_error"] <= PARITY_MAX_ABS:
        raise ParityError(f"{path.name}: ORT vs torch on item texts: {parity}")
    return {
        "file_mb": round(path.stat().st_size / 2**20, 1),
        "max_tokens": MAX_TOKENS,
        "parity": parity,
        "export_seconds": round(time.perf_counter() - start, 1),
    }
