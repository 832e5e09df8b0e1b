"""Small building blocks shared by the retrieval and ranking models.

Shapes: B = batch, N = candidates, H = history length, D = embedding width, T = tags,
P = profile fields, A = item attributes. Item index 0 is padding / unknown everywhere.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn


def mlp(sizes: Sequence[int], *, final_activation: bool = False) -> nn.Sequential:
    """Linear layers of the given widths with ReLU between them."""
    layers: list[nn.Module] = []
    for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
        layers.append(nn.Linear(n_in, n_out))
        if i < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class ItemFeatureArch(nn.Module):
    """(item rows, their tags, their attribute codes) -> concatenated id / tag / attribute
    features, float[..., out_dim].

    The side features are inputs (the exported graphs take them; serving gathers them from its
    item table, services.contract.item_table), so an item added after training is described by
    its own tags and attributes. Rows >= n_items (items added at runtime) have no trained id
    embedding: they read row 0 (unknown / padding), which is all zeros.

    The training tables stay here as buffers (item_tags float32[I, T] multi-hot, item_attrs
    int64[I, A] codes of the declared item attributes, one embedding table each, sizes
    `item_cardinalities`): `lookup` gathers a batch's features from them, and a call without
    features does so (every training call site). An exported graph never reads them. A dataset
    without tags has no tag part.
    """

    def __init__(
        self,
        n_items: int,
        item_tags: np.ndarray,
        item_attrs: np.ndarray,
        item_cardinalities: Sequence[int],
        id_dim: int,
        side_dim: int,
    ) -> None:
        super().__init__()
        self.n_items = int(n_items)
        self.register_buffer("item_tags", torch.as_tensor(item_tags, dtype=torch.float32))
        self.register_buffer(
            "item_attrs", torch.as_tensor(item_attrs, dtype=torch.int64).reshape(n_items, -1)
        )
        self.item_id = nn.Embedding(n_items, id_dim, padding_idx=0)
        n_tags = self.item_tags.shape[1]
        self.tags = nn.Linear(n_tags, side_dim, bias=False) if n_tags else None
        self.attrs = ProfileArch(item_cardinalities, side_dim)
        self.out_dim = id_dim + (side_dim if n_tags else 0) + self.attrs.out_dim
        nn.init.normal_(self.item_id.weight, std=0.05)
        with torch.no_grad():
            self.item_id.weight[0].zero_()

    def lookup(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training rows int64[...] -> (tags float32[..., T], attrs int64[..., A]) from the
        training tables."""
        return self.item_tags[items], self.item_attrs[items]

    def forward(
        self,
        items: torch.Tensor,
        tags: torch.Tensor | None = None,
        attrs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """items int64[...], tags float32[..., T], attrs int64[..., A] (both None: looked up
        in the training tables, for trained rows only)."""
        if tags is None or attrs is None:
            tags, attrs = self.lookup(items)
        parts = [self.item_id(known_rows(items, self.n_items))]
        if self.tags is not None:
            parts.append(self.tags(tags))
        parts += [emb(attrs[..., i]) for i, emb in enumerate(self.attrs.fields)]
        return torch.cat(parts, dim=-1)


def known_rows(items: torch.Tensor, n_rows: int) -> torch.Tensor:
    """Rows >= n_rows (items added after training) -> 0, the unknown row of a trained table."""
    # A scalar 0, not zeros_like: the exported graph needs no Shape + ConstantOfShape per call
    return torch.where(items < n_rows, items, 0)


class ProfileArch(nn.Module):
    """profile int64[B, P] -> float[B, P * dim], one embedding table per profile field."""

    def __init__(self, cardinalities: Sequence[int], dim: int) -> None:
        super().__init__()
        self.fields = nn.ModuleList(nn.Embedding(c, dim, padding_idx=0) for c in cardinalities)
        self.out_dim = dim * len(cardinalities)

    def forward(self, profile: torch.Tensor) -> torch.Tensor:
        return torch.cat([emb(profile[:, i]) for i, emb in enumerate(self.fields)], dim=-1)


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """values float[B, H, D], mask float[B, H] -> float[B, D]; zeros where the mask is empty."""
    total = (values * mask.unsqueeze(-1)).sum(dim=1)
    return total / mask.sum(dim=1, keepdim=True).clamp(min=1.0)


def l2_normalize(x: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Row-wise L2 normalisation written with primitive ops (exports to plain ONNX)."""
    return x / torch.sqrt((x * x).sum(dim=-1, keepdim=True) + eps * eps)


class TargetAttention(nn.Module):
    """DIN-style target attention: each candidate attends over the user's history.

    candidates float[B, N, D], history float[B, H, D], mask float[B, H] -> float[B, N, D].
    Scaled dot-product scores (cheap at N = 500, H = 50); an empty history pools to zeros.
    """

    def __init__(self, dim: int, key_dim: int = 32) -> None:
        super().__init__()
        self.query = nn.Linear(dim, key_dim, bias=False)
        self.key = nn.Linear(dim, key_dim, bias=False)
        self.scale = 1.0 / float(np.sqrt(key_dim))

    def forward(
        self, candidates: torch.Tensor, history: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        scores = torch.matmul(self.query(candidates), self.key(history).transpose(1, 2))
        scores = scores * self.scale + (mask.unsqueeze(1) - 1.0) * 1e4  # [B, N, H]
        # The mask on the history rows [B, H, D], not on the weights [B, N, H]: the same sum
        # (an empty history still pools to zeros), a smaller product, and the same expression
        # as masked_mean's, which ONNX Runtime computes once for both.
        return torch.matmul(torch.softmax(scores, dim=-1), history * mask.unsqueeze(-1))
