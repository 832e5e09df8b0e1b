"""Multi-task ranking model: P(interact), P(rating >= 4) and the rating itself, for N
candidates per user.

P(positive) is factorised: P(interact | user, item) x P(rating >= 4 | interact). The interact
logit learns from hard negatives (unrated retrieved items, label 0; every rated item is label
1) and carries the retrieval score; the "likes" logit and the rating learn from rated items
only, so P(positive) still orders the items a user rated (AUC among rated items). P(interact)
is exported on its own too: it is what the serving path orders candidates by (ordering by the
product costs top-K, since any held-out interaction counts, liked or not).

Shapes: B = batch, N = candidates, H = history length, P = profile fields, F = item features.
Ranker.forward is the exported graph (ranker.onnx of a bundle with a rating model:
`interact_logit`, the interact head alone); the training loss lives in `ranker_loss`. The MLP's
input row of a candidate is [user part, candidate part]; its first layer is applied split by
those columns (`Ranker.hidden`), so the user part goes through it once per user.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from training.models.layers import (
    ItemFeatureArch,
    ProfileArch,
    TargetAttention,
    known_rows,
    masked_mean,
    mlp,
)


@dataclass(frozen=True)
class RankerConfig:
    user_id_dim: int = 32
    profile_dim: int = 8
    item_id_dim: int = 32
    side_dim: int = 8
    attention_dim: int = 32
    # (64, 32): as good as (128, 64) on both datasets' two-stage metrics and ~23% cheaper to
    # serve (docs/performance.md, "A smaller P(interact) MLP")
    hidden_dims: tuple[int, ...] = (64, 32)
    positive_threshold: float = 4.0  # the dataset's "like" threshold on its rating scale
    rating_scale: tuple[float, float] = (1.0, 5.0)
    # Negatives per training example for P(interact) (label 0): items the retrieval model ranks
    # high for the user but the user never rated, plus items drawn by popularity. Without them
    # the ranker only ever sees rated items and cannot rank unrated retrieved candidates.
    hard_negatives: int = 16
    sampled_negatives: int = 0
    # Buy again (dataset behaviour.repeat): the candidate's own purchase record in the history
    # input (repeat_features) is an MLP input, and history_negatives earlier items of the user
    # that are not in the example's basket are negatives (else every history item is a positive).
    repeat_features: bool = False
    history_negatives: int = 0


REPEAT_DECAYS = (0.97, 0.8)  # per history position (0 = the latest event)
N_REPEAT_FEATURES = 2 + len(REPEAT_DECAYS)


def repeat_features(history: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """history int64[B, H] (most recent first, 0 = padding), items int64[B, N] -> float[B, N,
    N_REPEAT_FEATURES]: whether and how often each candidate is in the history (log1p count),
    and its recency-weighted count per decay. Part of the exported graph: serving computes it
    from the same history input, so training and serving cannot disagree."""
    match = (history.unsqueeze(1) == items.unsqueeze(-1)) & (history.unsqueeze(1) > 0)
    match = match.to(torch.float32)  # [B, N, H]
    position = torch.cumsum(torch.ones_like(history, dtype=torch.float32), dim=1) - 1.0  # [B, H]
    count = match.sum(dim=-1)
    parts = [(count > 0).to(torch.float32), torch.log1p(count)]
    for decay in REPEAT_DECAYS:
        weight = torch.exp(position * float(np.log(decay))).unsqueeze(1)  # [B, 1, H]
        parts.append((match * weight).sum(dim=-1))
    return torch.stack(parts, dim=-1)


class RetrievalScore(nn.Module):
    """Frozen retrieval model inside the ranker: (user_index, profile, history, item_vectors
    [B, N, D]) -> cosine of the user-tower query and each candidate's item-tower vector,
    float[B, N].

    The candidates' vectors are an input (ranker.onnx's `item_vectors`, gathered by serving
    from item_embeddings.npy or a runtime-added item's own vector); `item_embeddings` (the
    training rows' vectors) stays a buffer for the training call sites, which pass `items`
    and get their vectors looked up (`lookup`)."""

    def __init__(self, user_tower: nn.Module, item_embeddings: np.ndarray) -> None:
        super().__init__()
        self.user_tower = user_tower
        self.register_buffer("item_embeddings", torch.as_tensor(item_embeddings))
        self.requires_grad_(False)
        self._given: torch.Tensor | None = None  # set by `given`: the user tower's output

    @contextlib.contextmanager
    def given(self, query: torch.Tensor) -> Iterator[None]:
        """Within the block, the user-tower query float[B, D] is `query` (not computed from the
        user inputs): how ranker.onnx is exported (training.export.QueryGiven), so serving
        feeds the embedding retrieval already computed (`user_embedding`) instead of running
        the tower a second time inside the ranker."""
        self._given = query
        try:
            yield
        finally:
            self._given = None

    def lookup(self, items: torch.Tensor) -> torch.Tensor:
        """Training rows int64[B, N] -> their item-tower vectors float32[B, N, D]."""
        return self.item_embeddings[items]

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor | None = None,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
        history_age: torch.Tensor | None = None,
        history_kind: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """items (training rows) or item_vectors: one of the two. history_age / history_kind:
        for a user tower that reads them (training.models.two_tower SequenceEncoder)."""
        if item_vectors is None:
            assert items is not None, "RetrievalScore needs items or item_vectors"
            item_vectors = self.lookup(items)
        query = self._given
        if query is None:
            query = self.user_tower(
                user_index, profile, history, history_tags, history_attrs,
                history_age, history_kind,
            )  # fmt: skip
        return torch.matmul(item_vectors, query.unsqueeze(-1)).squeeze(-1)  # [B, N]

    def train(self, mode: bool = True) -> RetrievalScore:
        return super().train(False)  # frozen: dropout/batch statistics never change


class Ranker(nn.Module):
    """(user_index [B], profile [B, P], history [B, H], items [B, N], and the items' side
    features: history_tags [B, H, T], history_attrs [B, H, A], item_tags [B, N, T],
    item_attrs [B, N, A], item_vectors [B, N, D]) ->
    (p_positive float32[B, N], rating float32[B, N] in [1, 5], p_interact float32[B, N]).

    The side features are what ranker.onnx takes (ITEM_FEATURE_INPUTS order); a call without
    them (every training call site) looks them up in the training tables. Rows >= n_items (items
    added after training) read the unknown row of the id embedding and item bias; the repeat
    features compare the real rows.

    Each candidate attends over the history (target attention). Three heads share the MLP:
    p_interact = sigmoid(interact), p_positive = sigmoid(interact) * sigmoid(likes); the rating
    head blends the MLP with user and item biases: rating = 1 + 4 * sigmoid(z + b_u + b_i + b).
    With `retrieval`, the (frozen) two-tower score of each candidate is one more input and a
    learned multiple of it is added to the interact logit.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        profile_cardinalities: Sequence[int],
        item_tags: np.ndarray,
        item_attrs: np.ndarray,
        item_cardinalities: Sequence[int],
        config: RankerConfig,
        retrieval: RetrievalScore | None = None,
    ) -> None:
        super().__init__()
        self.retrieval = retrieval
        self.rating_scale = config.rating_scale
        self.user_id = nn.Embedding(n_users, config.user_id_dim)
        self.profile = ProfileArch(profile_cardinalities, config.profile_dim)
        self.item_features = ItemFeatureArch(
            n_items, item_tags, item_attrs, item_cardinalities, config.item_id_dim, config.side_dim
        )
        f = self.item_features.out_dim
        self.attention = TargetAttention(f, config.attention_dim)
        user_width = config.user_id_dim + self.profile.out_dim + f
        self.user_width = user_width  # the first columns of the MLP's input: the user part
        n_scores = 0 if retrieval is None else 1
        n_scores += N_REPEAT_FEATURES if config.repeat_features else 0
        # A direct linear path too, as for the retrieval score: "bought often, bought lately"
        # is the strongest grocery signal and must not wait for the MLP to find it.
        self.repeat_weight = nn.Linear(N_REPEAT_FEATURES, 1) if config.repeat_features else None
        self.over = mlp([user_width + 3 * f + n_scores, *config.hidden_dims], final_activation=True)
        self.retrieval_weight = nn.Parameter(torch.full((1,), 1.0 / 0.07))
        self.heads = nn.Linear(config.hidden_dims[-1], 3)  # [interact, likes, rating] logits
        self.user_bias = nn.Embedding(n_users, 1)
        self.item_bias = nn.Embedding(n_items, 1)
        self.global_bias = nn.Parameter(torch.zeros(1))
        for table in (self.user_id, self.user_bias, self.item_bias):
            nn.init.normal_(table.weight, std=0.01)

    def mlp_inputs(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
        history_age: torch.Tensor | None = None,
        history_kind: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """The MLP's input in its two parts: (user float[B, U]: user id, profile, history
        mean, the same for all N candidates; per-candidate float[B, N, C]: cand, attended,
        cand * attended[, retrieval score][, repeat features]; the retrieval score float[B, N]
        or None; the repeat features float[B, N, R] or None). The MLP's input row of a
        candidate is [user, per-candidate] (U + C = self.over[0].in_features)."""
        mask = (history > 0).to(torch.float32)
        hist = self.item_features(history, history_tags, history_attrs)  # [B, H, F]
        cand = self.item_features(items, item_tags, item_attrs)  # [B, N, F]
        attended = self.attention(cand, hist, mask)  # [B, N, F]
        user = torch.cat(
            [self.user_id(user_index), self.profile(profile), masked_mean(hist, mask)], dim=-1
        )
        parts = [cand, attended, cand * attended]
        score = None
        if self.retrieval is not None:
            score = self.retrieval(
                user_index,
                profile,
                history,
                items,
                history_tags,
                history_attrs,
                item_vectors,
                history_age,
                history_kind,
            )  # [B, N]
            parts.append(score.unsqueeze(-1))
        repeat = None
        if self.repeat_weight is not None:
            repeat = repeat_features(history, items)  # [B, N, R]
            parts.append(repeat)
        return user, torch.cat(parts, dim=-1), score, repeat

    def hidden(self, user: torch.Tensor, per_candidate: torch.Tensor) -> torch.Tensor:
        """self.over on each candidate's row [user, per-candidate] -> float[B, N, hidden],
        with the first layer split by columns: the user part goes through its columns once
        per user ([B, 1, hidden], broadcast over the N candidates), not per candidate. Same
        parameters, same math as self.over(torch.cat([user expanded to N, per_candidate], -1))
        up to float rounding."""
        first, width = self.over[0], self.user_width
        out = F.linear(per_candidate, first.weight[:, width:])  # [B, N, hidden]
        out = out + F.linear(user, first.weight[:, :width], first.bias).unsqueeze(1)
        for layer in self.over[1:]:
            out = layer(out)
        return out

    def logits(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
        history_age: torch.Tensor | None = None,
        history_kind: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(interact logit float[B, N], likes logit float[B, N], rating float[B, N])."""
        user, per_candidate, score, repeat = self.mlp_inputs(
            user_index, profile, history, items,
            history_tags, history_attrs, item_tags, item_attrs, item_vectors,
            history_age, history_kind,
        )  # fmt: skip
        heads = self.heads(self.hidden(user, per_candidate))  # [B, N, 3]
        item_bias = self.item_bias(known_rows(items, self.item_features.n_items)).squeeze(-1)
        bias = self.user_bias(user_index) + item_bias + self.global_bias
        low, high = self.rating_scale
        rating = low + (high - low) * torch.sigmoid(heads[..., 2] + bias)
        interact = self._interact(heads[..., 0], score, repeat)
        return interact, heads[..., 1], rating

    def _interact(
        self, head: torch.Tensor, score: torch.Tensor | None, repeat: torch.Tensor | None
    ) -> torch.Tensor:
        """The interact head's output float[B, N] -> the interact logit (plus the direct
        paths of the retrieval score and the repeat features)."""
        if score is not None:
            head = head + self.retrieval_weight * score
        if repeat is not None:
            head = head + self.repeat_weight(repeat).squeeze(-1)
        return head

    def interact_logit(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
        history_age: torch.Tensor | None = None,
        history_kind: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """logits(...)[0] alone: the interact head's row of self.heads only (ranker.onnx, the
        InteractGraph, needs no likes or rating head)."""
        user, per_candidate, score, repeat = self.mlp_inputs(
            user_index, profile, history, items,
            history_tags, history_attrs, item_tags, item_attrs, item_vectors,
            history_age, history_kind,
        )  # fmt: skip
        hidden = self.hidden(user, per_candidate)
        head = F.linear(hidden, self.heads.weight[:1], self.heads.bias[:1]).squeeze(-1)
        return self._interact(head, score, repeat)

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        items: torch.Tensor,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
        item_tags: torch.Tensor | None = None,
        item_attrs: torch.Tensor | None = None,
        item_vectors: torch.Tensor | None = None,
        history_age: torch.Tensor | None = None,
        history_kind: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """-> (p_positive, rating, p_interact); the order of ranker.onnx's outputs."""
        interact, likes, rating = self.logits(
            user_index, profile, history, items,
            history_tags, history_attrs, item_tags, item_attrs, item_vectors,
            history_age, history_kind,
        )  # fmt: skip
        p_interact = torch.sigmoid(interact)
        return p_interact * torch.sigmoid(likes), rating, p_interact


def ranker_loss(
    model: Ranker,
    user_index: torch.Tensor,
    profile: torch.Tensor,
    history: torch.Tensor,
    items: torch.Tensor,
    ratings: torch.Tensor,
    threshold: float = 4.0,
    negatives: torch.Tensor | None = None,
    events: dict[str, torch.Tensor] | None = None,
) -> torch.Tensor:
    """BCE(interact) + BCE(likes: rating >= threshold) + MSE(rating); items int64[B, 1] are the
    rated items (interact label 1), ratings float[B] (NaN: an event without a rating, which adds
    nothing to the likes and rating losses).

    negatives int64[B, M] (optional): unrated items, interact label 0; they add nothing to the
    likes and rating losses, which see rated items only. events: history_age / history_kind
    float/int64[B, H] for a retrieval score whose user tower reads them.
    """
    if negatives is not None:
        items = torch.cat([items, negatives], dim=1)
    interact, likes, rating = model.logits(user_index, profile, history, items, **(events or {}))
    labels = torch.zeros_like(interact)
    labels[:, 0] = 1.0
    bce_interact = F.binary_cross_entropy_with_logits(interact, labels)
    rated = ~torch.isnan(ratings)
    if not bool(rated.any()):
        return bce_interact
    truth = ratings[rated]
    liked = (truth >= threshold).to(torch.float32)
    bce_likes = F.binary_cross_entropy_with_logits(likes[:, 0][rated], liked)
    return bce_interact + bce_likes + F.mse_loss(rating[:, 0][rated], truth)
