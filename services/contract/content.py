"""Item text -> an item embedding in the item tower's space (cold start from content).

A bundle may carry a content encoder: `content_encoder.onnx` (a small sentence-embedding
model, all-MiniLM-L6-v2, with mean pooling and a learned projection into the item-tower space
baked into the graph) and its tokenizer, `content_tokenizer.json`. Training fits the projection
on the items it has interaction data for; at serving time an item nobody has interacted with
yet gets its embedding from its text alone, so retrieval can return it from day one.

`item_text` is the one definition of an item's text: training encodes the catalog with it and
the services encode new items with it (no training/serving skew).

Graph contract: inputs `input_ids` int64[N, T] and `attention_mask` int64[N, T]; output
`embedding` float32[N, D], L2-normalised (D = the bundle's embedding_dim).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from services.contract.bundle import Bundle
from services.contract.onnx import create_session

if TYPE_CHECKING:
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

CONTENT_ENCODER_FILE = "content_encoder.onnx"
CONTENT_TOKENIZER_FILE = "content_tokenizer.json"
MAX_TOKENS = 64  # titles and short descriptions; longer text is truncated
MAX_TEXT_CHARS = 2_000


def title_with_year(title: str, year: int | None) -> str:
    """MovieLens-style title, "Toy Story (1995)": the catalog stores the year apart from the
    title, but the text model was trained on titles as people write them."""
    title = title.strip()
    return f"{title} ({int(year)})" if year and int(year) > 0 else title


def has_content_encoder(manifest: dict) -> bool:
    """Whether a bundle's manifest lists a content encoder (and its tokenizer)."""
    files = manifest.get("files", {})
    return CONTENT_ENCODER_FILE in files and CONTENT_TOKENIZER_FILE in files


def item_text(title: str, tags: Sequence[str] = (), description: str = "") -> str:
    """The text an item is embedded from: title, then its tags, then any description."""
    parts = [title.strip()]
    if tags:
        parts.append(", ".join(t.strip() for t in tags if t.strip()))
    if description.strip():
        parts.append(description.strip())
    return ". ".join(p for p in parts if p)[:MAX_TEXT_CHARS]


def load_tokenizer(path: Path | str) -> Tokenizer:
    """The tokenizer.json with the serving settings: truncation to MAX_TOKENS, padding to the
    batch's longest. Training tokenizes through this too, so both sides feed the graph the same
    ids."""
    from tokenizers import Tokenizer  # serving dependency, imported only when used

    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.enable_truncation(max_length=MAX_TOKENS)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")
    return tokenizer


def tokenize(tokenizer: Tokenizer, texts: Sequence[str]) -> dict[str, np.ndarray]:
    """texts -> {"input_ids": int64[N, T], "attention_mask": int64[N, T]} (the graph's inputs)."""
    encoded = tokenizer.encode_batch([str(t) for t in texts])
    return {
        "input_ids": np.array([e.ids for e in encoded], dtype=np.int64).reshape(len(encoded), -1),
        "attention_mask": np.array([e.attention_mask for e in encoded], dtype=np.int64).reshape(
            len(encoded), -1
        ),
    }


class ContentEncoder:
    """Tokenizer (the `tokenizers` package, no torch) + ONNX graph, on CPU."""

    def __init__(self, session, tokenizer, dim: int) -> None:
        self._session = session
        self._tokenizer = tokenizer
        self.dim = dim

    @classmethod
    def from_bundle(cls, bundle: Bundle, *, intra_op_threads: int = 1) -> ContentEncoder | None:
        """None when the bundle ships no content encoder (older bundles)."""
        if not has_content_encoder(bundle.manifest):
            return None
        tokenizer = load_tokenizer(bundle.path(CONTENT_TOKENIZER_FILE))
        session, provider = create_session(
            bundle.path(CONTENT_ENCODER_FILE), intra_op_threads=intra_op_threads
        )
        log.info("content encoder of bundle %s on %s", bundle.version, provider)
        return cls(session, tokenizer, bundle.embedding_dim)

    def tokenize(self, texts: Sequence[str]) -> dict[str, np.ndarray]:
        """-> {"input_ids": int64[N, T], "attention_mask": int64[N, T]}."""
        return tokenize(self._tokenizer, texts)

    def encode(self, texts: Sequence[str], batch_size: int = 64) -> np.ndarray:
        """texts -> float32[N, D], L2-normalised, in the item tower's space."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        out = []
        for start in range(0, len(texts), batch_size):
            feeds = self.tokenize(texts[start : start + batch_size])
            (emb,) = self._session.run(["embedding"], feeds)
            out.append(np.asarray(emb, dtype=np.float32))
        return np.concatenate(out)
