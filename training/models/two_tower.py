"""Two-tower retrieval model: UserTower and ItemTower map into one L2-normalised space.

Shapes: B = batch, H = history length, P = profile fields, D = embedding_dim.
The exported graphs are the towers themselves; TwoTower only adds the training loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.models.layers import ItemFeatureArch, ProfileArch, l2_normalize, masked_mean, mlp


@dataclass(frozen=True)
class TwoTowerConfig:
    embedding_dim: int = 64
    user_id_dim: int = 32
    profile_dim: int = 8
    item_id_dim: int = 48
    side_dim: int = 16
    hidden_dim: int = 128
    temperature: float = 0.07


class UserTower(nn.Module):
    """(user_index int64[B], profile int64[B, P], history int64[B, H], history_tags
    float32[B, H, T], history_attrs int64[B, H, A]) -> embedding float32[B, D].

    history is most recent first, 0-padded; the history is summarised by a masked mean of the
    items' features plus the most recent item on its own (recency matters for next-item).
    The history items' side features are inputs (user_tower.onnx takes them); left out (every
    training call), they are looked up in the training tables.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        profile_cardinalities: Sequence[int],
        item_tags: np.ndarray,
        item_attrs: np.ndarray,
        item_cardinalities: Sequence[int],
        config: TwoTowerConfig,
    ) -> None:
        super().__init__()
        self.user_id = nn.Embedding(n_users, config.user_id_dim)
        self.profile = ProfileArch(profile_cardinalities, config.profile_dim)
        self.history_items = ItemFeatureArch(
            n_items,
            item_tags,
            item_attrs,
            item_cardinalities,
            config.item_id_dim,
            config.side_dim // 2,
        )
        width = config.user_id_dim + self.profile.out_dim + 2 * self.history_items.out_dim
        self.over = mlp([width, config.hidden_dim, config.embedding_dim])
        nn.init.normal_(self.user_id.weight, std=0.05)

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        mask = (history > 0).to(torch.float32)
        hist = self.history_items(history, history_tags, history_attrs)  # [B, H, F]
        features = torch.cat(
            [self.user_id(user_index), self.profile(profile), masked_mean(hist, mask), hist[:, 0]],
            dim=-1,
        )
        return l2_normalize(self.over(features))


class ItemTower(nn.Module):
    """items int64[B] -> embedding float32[B, D] (id + tags + item attributes -> MLP)."""

    def __init__(
        self,
        n_items: int,
        item_tags: np.ndarray,
        item_attrs: np.ndarray,
        item_cardinalities: Sequence[int],
        config: TwoTowerConfig,
    ) -> None:
        super().__init__()
        self.features = ItemFeatureArch(
            n_items, item_tags, item_attrs, item_cardinalities, config.item_id_dim, config.side_dim
        )
        self.over = mlp([self.features.out_dim, config.hidden_dim, config.embedding_dim])

    def forward(
        self,
        items: torch.Tensor,
        tags: torch.Tensor | None = None,
        attrs: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return l2_normalize(self.over(self.features(items, tags, attrs)))


class TwoTower(nn.Module):
    """Both towers plus the in-batch sampled-softmax loss with logQ correction.

    item_log_q float[I]: log of each item's sampling probability (its share of training
    interactions), subtracted from the logits so popular items are not over-penalised as
    in-batch negatives (Yi et al., 2019).
    """

    def __init__(
        self,
        user_tower: UserTower,
        item_tower: ItemTower,
        item_log_q: np.ndarray,
        temperature: float,
    ) -> None:
        super().__init__()
        self.user_tower = user_tower
        self.item_tower = item_tower
        self.temperature = temperature
        self.register_buffer("item_log_q", torch.as_tensor(item_log_q, dtype=torch.float32))

    def loss(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
    ) -> torch.Tensor:
        """Mean cross-entropy of each user against the batch's positives (items int64[B])."""
        users = self.user_tower(user_index, profile, history)  # [B, D]
        positives = self.item_tower(items)  # [B, D]
        logits = users @ positives.T / self.temperature - self.item_log_q[items].unsqueeze(0)
        # The same item twice in a batch is not a negative for either row.
        duplicate = (items.unsqueeze(0) == items.unsqueeze(1)) & ~torch.eye(
            len(items), dtype=torch.bool, device=items.device
        )
        logits = logits.masked_fill(duplicate, -1e9)
        return F.cross_entropy(logits, torch.arange(len(items), device=items.device))

    @torch.no_grad()
    def item_embeddings(self, n_items: int, batch_size: int = 8192) -> np.ndarray:
        """float32[n_items, D] for item rows 0..n_items-1, with row 0 (unknown) set to zeros."""
        self.eval()
        rows = [
            self.item_tower(torch.arange(start, min(start + batch_size, n_items)))
            for start in range(0, n_items, batch_size)
        ]
        out = torch.cat(rows).numpy().astype(np.float32)
        out[0] = 0.0
        return out
