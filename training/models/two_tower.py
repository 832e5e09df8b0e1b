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

from services.contract.features import N_EVENT_TOKENS
from training.models.layers import ItemFeatureArch, ProfileArch, l2_normalize, masked_mean, mlp

# Time buckets of an age or a gap in seconds: 0 = unknown (negative), else
# 1 + floor(log2(1 + seconds / 60)), capped: under a minute, 1-3 min, 3-7 min, ... a year+.
N_TIME_BUCKETS = 24


def time_buckets(seconds: torch.Tensor) -> torch.Tensor:
    """float[...] seconds (-1 = unknown) -> int64[...] buckets in [0, N_TIME_BUCKETS)."""
    log = torch.floor(torch.log2(1.0 + torch.clamp(seconds, min=0.0) / 60.0))
    bucket = torch.clamp(log, max=float(N_TIME_BUCKETS - 2)).to(torch.int64) + 1
    return torch.where(seconds < 0, torch.zeros_like(bucket), bucket)


@dataclass(frozen=True)
class TwoTowerConfig:
    embedding_dim: int = 64
    user_id_dim: int = 32
    profile_dim: int = 8
    item_id_dim: int = 48
    side_dim: int = 16
    hidden_dim: int = 128
    temperature: float = 0.07
    # How the user tower summarises the history: "mean" (masked mean of the items' features
    # plus the most recent item) or "transformer" (SequenceEncoder over the seq_len most
    # recent items; its state at the most recent position).
    user_encoder: str = "mean"
    seq_len: int = 50
    seq_dim: int = 64
    seq_layers: int = 1  # TrainConfig.user_seq_layers
    seq_heads: int = 2
    seq_dropout: float = 0.1
    # The transformer also reads what each history event was and when (the history_age /
    # history_kind inputs, services.contract.features): seq_time adds an embedding of each
    # event's age at the request and of the gap to the event before it (log-spaced buckets);
    # seq_kinds an embedding of its event token (view, purchase, a rating's step, ...).
    seq_time: bool = False
    seq_kinds: bool = False


USER_ENCODERS = ("mean", "transformer")


class SelfAttention(nn.Module):
    """Multi-head self-attention from primitive ops (Linear, matmul, softmax), so the ONNX
    graph is plain MatMul/Softmax/Where (no fused attention op). x float[B, L, E], allowed
    bool[B, L, L] (query i may read key j) -> float[B, L, E]. Every query must be allowed at
    least one key (the caller lets each position read itself): no row is all -inf.
    first_only: only query position 0 is computed (-> float[B, 1, E]; allowed [B, 1, L]):
    the same numbers as its row of the full output, for the last layer of `last`."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"seq_dim {dim} is not a multiple of seq_heads {heads}")
        self.heads, self.head_dim = heads, dim // heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, first_only: bool = False
    ) -> torch.Tensor:
        b, length = x.shape[0], x.shape[1]
        # The width as a Python constant, not read off x.shape: the exported graph then splits
        # the qkv weights once, at export, instead of on every call (16 fewer ONNX nodes).
        dim = self.heads * self.head_dim
        if first_only:  # keys and values of every position, the query of position 0 only
            w_q, w_kv = self.qkv.weight.split([dim, 2 * dim])
            b_q, b_kv = self.qkv.bias.split([dim, 2 * dim])
            q = F.linear(x[:, :1], w_q, b_q).reshape(b, 1, self.heads, self.head_dim)
            kv = F.linear(x, w_kv, b_kv).reshape(b, length, 2, self.heads, self.head_dim)
            k, v = kv.permute(2, 0, 3, 1, 4).unbind(0)
            q = q.transpose(1, 2)  # [B, heads, 1, head_dim]
        else:
            qkv = self.qkv(x).reshape(b, length, 3, self.heads, self.head_dim)
            q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each [B, heads, L, head_dim]
        scores = torch.matmul(q, k.transpose(-1, -2)) * (self.head_dim**-0.5)
        scores = scores.masked_fill(~allowed.unsqueeze(1), -1e9)  # finite: never NaN
        weights = self.dropout(torch.softmax(scores, dim=-1))
        mixed = torch.matmul(weights, v).transpose(1, 2).reshape(b, q.shape[2], dim)
        return self.out(mixed)


class EncoderLayer(nn.Module):
    """Pre-LN transformer block: x + attn(LN(x)), then x + FFN(LN(x)). first_only: the
    output at position 0 only (float[B, 1, E]; see SelfAttention)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attention = SelfAttention(dim, heads, dropout)
        self.ffn = nn.Sequential(
            nn.Linear(dim, 2 * dim), nn.ReLU(), nn.Dropout(dropout), nn.Linear(2 * dim, dim)
        )
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: torch.Tensor, allowed: torch.Tensor, first_only: bool = False
    ) -> torch.Tensor:
        if first_only:
            x = x[:, :1] + self.dropout(self.attention(self.norm1(x), allowed[:, :1], True))
        else:
            x = x + self.dropout(self.attention(self.norm1(x), allowed))
        return x + self.dropout(self.ffn(self.norm2(x)))


class SequenceEncoder(nn.Module):
    """Causal self-attention over the most recent items of a history.

    hist float[B, H, F] (the items' ItemFeatureArch features, most recent first), valid
    bool[B, H] -> states float[B, L, E] with L = min(H, seq_len): position 0 is the most
    recent item. Causal in time: position i reads positions j >= i (itself and older items),
    never a more recent one; padding keys are never read. Positions are learned embeddings by
    recency (0 = most recent). A padding position reads only itself (so no softmax row is
    all-masked) and is never read by a real one; `last` zeroes the state of an empty history.
    """

    def __init__(self, in_dim: int, config: TwoTowerConfig) -> None:
        super().__init__()
        self.seq_len = config.seq_len
        self.project = nn.Linear(in_dim, config.seq_dim)
        self.position = nn.Embedding(config.seq_len, config.seq_dim)
        self.dropout = nn.Dropout(config.seq_dropout)
        self.layers = nn.ModuleList(
            EncoderLayer(config.seq_dim, config.seq_heads, config.seq_dropout)
            for _ in range(config.seq_layers)
        )
        self.norm = nn.LayerNorm(config.seq_dim)
        self.out_dim = config.seq_dim
        nn.init.normal_(self.position.weight, std=0.02)
        # what each event was and when (None: not read; the graph then has no such input)
        dim, timed = config.seq_dim, config.seq_time
        self.age = nn.Embedding(N_TIME_BUCKETS, dim) if timed else None  # before the latest
        self.gap = nn.Embedding(N_TIME_BUCKETS, dim) if timed else None  # to the next older
        self.since = nn.Embedding(N_TIME_BUCKETS, dim) if timed else None  # latest -> request
        self.kind = nn.Embedding(N_EVENT_TOKENS, config.seq_dim) if config.seq_kinds else None
        for table in (self.age, self.gap, self.since, self.kind):
            if table is not None:
                nn.init.normal_(table.weight, std=0.02)

    @property
    def reads_events(self) -> bool:
        return self.since is not None or self.kind is not None

    def event_embedding(
        self, age: torch.Tensor | None, kind: torch.Tensor | None, length: int
    ) -> torch.Tensor | float:
        """float[B, L, E] added to each position: how long before the latest event it came
        and the gap to the next older event (time buckets), its event token, and at position 0
        only, how long ago the latest event was at the request (each when configured).

        Only that last one depends on the request's clock: a log replayed years after it was
        recorded (MovieLens today) moves one input of one position, not the whole sequence."""
        out: torch.Tensor | float = 0.0
        if self.age is not None and self.gap is not None and self.since is not None:
            if age is None:
                raise ValueError("this sequence encoder reads history_age: pass it")
            age = age[:, :length]
            unknown = torch.full_like(age, -1.0)
            latest = age[:, :1]
            before_latest = torch.where((age >= 0) & (latest >= 0), age - latest, unknown)
            older = torch.cat([age[:, 1:], unknown[:, :1]], dim=1)
            gap = torch.where((age >= 0) & (older >= 0), older - age, unknown)
            first = (torch.arange(length, device=age.device) == 0).to(age.dtype)[None, :, None]
            out = (
                out
                + self.age(time_buckets(before_latest))
                + self.gap(time_buckets(gap))
                + self.since(time_buckets(latest)) * first
            )
        if self.kind is not None:
            if kind is None:
                raise ValueError("this sequence encoder reads history_kind: pass it")
            out = out + self.kind(kind[:, :length])
        return out

    def forward(
        self,
        hist: torch.Tensor,
        valid: torch.Tensor,
        first_only: bool = False,
        age: torch.Tensor | None = None,
        kind: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """-> float[B, L, E]; first_only: float[B, 1, E], position 0 alone (the last layer
        computes no other query: the same numbers, less work). age float[B, H] / kind
        int64[B, H]: the history_age / history_kind inputs (read when configured)."""
        hist, valid = hist[:, : self.seq_len], valid[:, : self.seq_len]
        length = hist.shape[1]
        x = self.project(hist) + self.position.weight[:length].unsqueeze(0)
        x = x + self.event_embedding(age, kind, length)
        x = self.dropout(x)
        # Query i may read key j when j is not more recent (j >= i) and j is a real item;
        # every position may read itself (padding rows then stay finite).
        order = torch.arange(length, device=hist.device)
        causal = order.unsqueeze(0) >= order.unsqueeze(1)  # [L(query), L(key)]: key j >= i
        self_only = order.unsqueeze(0) == order.unsqueeze(1)
        allowed = (causal.unsqueeze(0) & valid.unsqueeze(1)) | self_only.unsqueeze(0)
        for i, layer in enumerate(self.layers):
            x = layer(x, allowed, first_only and i == len(self.layers) - 1)
        return self.norm(x)

    def last(
        self,
        hist: torch.Tensor,
        valid: torch.Tensor,
        age: torch.Tensor | None = None,
        kind: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """float[B, E]: the state at the most recent position; zeros for an empty history."""
        states = self.forward(hist, valid, True, age, kind)
        return states[:, 0] * valid[:, :1].to(states.dtype)


class UserTower(nn.Module):
    """(user_index int64[B], profile int64[B, P], history int64[B, H], history_tags
    float32[B, H, T], history_attrs int64[B, H, A]) -> embedding float32[B, D].

    history is most recent first, 0-padded. config.user_encoder "mean": the history is
    summarised by a masked mean of the items' features plus the most recent item on its own
    (recency matters for next-item); "transformer": by SequenceEncoder's state at the most
    recent position (causal self-attention over the seq_len most recent items). Either way the
    ONNX inputs and output are the same.
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
        if config.user_encoder not in USER_ENCODERS:
            raise ValueError(f"user_encoder {config.user_encoder!r}: one of {USER_ENCODERS}")
        self.sequence = (
            SequenceEncoder(self.history_items.out_dim, config)
            if config.user_encoder == "transformer"
            else None
        )
        history_dim = (
            2 * self.history_items.out_dim if self.sequence is None else self.sequence.out_dim
        )
        self.reads_events = self.sequence is not None and self.sequence.reads_events
        width = config.user_id_dim + self.profile.out_dim + history_dim
        self.over = mlp([width, config.hidden_dim, config.embedding_dim])
        nn.init.normal_(self.user_id.weight, std=0.05)

    def forward(
        self,
        user_index: torch.Tensor,
        profile: torch.Tensor,
        history: torch.Tensor,
        history_tags: torch.Tensor | None = None,
        history_attrs: torch.Tensor | None = None,
        history_age: torch.Tensor | None = None,
        history_kind: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """history_age / history_kind: read by a transformer configured with seq_time /
        seq_kinds (then required), ignored otherwise (the graph declares no such input)."""
        if self.sequence is not None:  # only the seq_len most recent items are read
            n = self.sequence.seq_len
            history = history[:, :n]
            history_tags = None if history_tags is None else history_tags[:, :n]
            history_attrs = None if history_attrs is None else history_attrs[:, :n]
        hist = self.history_items(history, history_tags, history_attrs)  # [B, H, F]
        if self.sequence is not None:
            summary = [self.sequence.last(hist, history > 0, history_age, history_kind)]
        else:
            summary = [masked_mean(hist, (history > 0).to(torch.float32)), hist[:, 0]]
        features = torch.cat([self.user_id(user_index), self.profile(profile), *summary], dim=-1)
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
        history_age: torch.Tensor | None = None,
        history_kind: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Mean cross-entropy of each user against the batch's positives (items int64[B])."""
        users = self.user_tower(
            user_index, profile, history, history_age=history_age, history_kind=history_kind
        )  # [B, D]
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
