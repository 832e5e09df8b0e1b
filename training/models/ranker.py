"""Multi-task ranking model: P(rating >= 4) and the rating itself, for N candidates per user.

Shapes: B = batch, N = candidates, H = history length, P = profile fields, F = item features.
Ranker.forward is the exported graph; the training loss lives in `ranker_loss`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.models.layers import ItemFeatureArch, ProfileArch, TargetAttention, masked_mean, mlp


@dataclass(frozen=True)
class RankerConfig:
    user_id_dim: int = 32
    profile_dim: int = 8
    item_id_dim: int = 32
    side_dim: int = 8
    attention_dim: int = 32
    hidden_dims: tuple[int, ...] = (128, 64)
    positive_threshold: float = 4.0


class Ranker(nn.Module):
    """(user_index [B], profile [B, P], history [B, H], items [B, N]) ->
    (p_positive float32[B, N], rating float32[B, N] in [1, 5]).

    Each candidate attends over the history (target attention). The rating head blends the
    interaction MLP with user and item biases: rating = 1 + 4 * sigmoid(z + b_u + b_i + b).
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        profile_cardinalities: Sequence[int],
        item_tags: np.ndarray,
        item_years: np.ndarray,
        n_year_buckets: int,
        config: RankerConfig,
    ) -> None:
        super().__init__()
        self.user_id = nn.Embedding(n_users, config.user_id_dim)
        self.profile = ProfileArch(profile_cardinalities, config.profile_dim)
        self.item_features = ItemFeatureArch(
            n_items, item_tags, item_years, n_year_buckets, config.item_id_dim, config.side_dim
        )
        f = self.item_features.out_dim
        self.attention = TargetAttention(f, config.attention_dim)
        user_width = config.user_id_dim + self.profile.out_dim + f
        self.over = mlp([user_width + 3 * f, *config.hidden_dims], final_activation=True)
        self.heads = nn.Linear(config.hidden_dims[-1], 2)  # [positive logit, rating logit]
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.global_bias = nn.Parameter(torch.zeros(1))
        for table in (self.user_id, self.user_bias, self.item_bias):
            nn.init.normal_(table.weight, std=0.01)

    def logits(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(positive logit float[B, N], rating float[B, N])."""
        mask = (history > 0).to(torch.float32)
        hist = self.item_features(history)  # [B, H, F]
        cand = self.item_features(items)  # [B, N, F]
        attended = self.attention(cand, hist, mask)  # [B, N, F]
        user = torch.cat(
            [self.user_id(user_index), self.profile(profile), masked_mean(hist, mask)], dim=-1
        )
        user = user.unsqueeze(1).expand(-1, items.shape[1], -1)
        hidden = self.over(torch.cat([user, cand, attended, cand * attended], dim=-1))
        heads = self.heads(hidden)  # [B, N, 2]
        bias = self.user_bias(user_index) + self.item_bias(items).squeeze(-1) + self.global_bias
        rating = 1.0 + 4.0 * torch.sigmoid(heads[..., 1] + bias)
        return heads[..., 0], rating

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        logit, rating = self.logits(user_index, profile, history, items)
        return torch.sigmoid(logit), rating


def ranker_loss(
    model: Ranker,
    user_index: torch.Tensor,
    profile: torch.Tensor,
    history: torch.Tensor,
    items: torch.Tensor,
    ratings: torch.Tensor,
    threshold: float = 4.0,
) -> torch.Tensor:
    """BCE on rating >= threshold plus MSE on the rating; items int64[B, 1], ratings float[B]."""
    logit, rating = model.logits(user_index, profile, history, items)
    positive = (ratings >= threshold).to(torch.float32)
    bce = F.binary_cross_entropy_with_logits(logit[:, 0], positive)
    return bce + F.mse_loss(rating[:, 0], ratings)
