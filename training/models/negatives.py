"""Negatives for the ranker's P(positive): unrated items a user could be shown, label 0.

Hard negatives come from the retrieval model (the items it ranks highest for the user among
those the user never interacted with in training): exactly the candidates the ranker must
re-order at serving time. Sampled negatives are drawn by popularity, so popular items are not
learned to be positive for everyone. Shapes: U = user rows, K = hard candidates per user,
I = item rows, B = batch, M = negatives per example.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from training.models.two_tower import UserTower


@torch.no_grad()
def retrieval_candidates(
    user_tower: UserTower,
    item_embeddings: np.ndarray,
    user_profiles: np.ndarray,
    histories: np.ndarray,
    seen: pd.DataFrame,
    k: int,
    batch_size: int = 1024,
    exclude: np.ndarray | None = None,
    events: dict[str, np.ndarray] | None = None,
) -> np.ndarray:
    """int64[U, K]: each user's top-k items by the retrieval model, excluding row 0, the
    items in `seen` (indexed events) and the rows `exclude` (for every user: items that do not
    exist at training time, e.g. the cold items of training.evaluate.cold_items).
    histories int64[U, H]: each user's latest history; events: its history_age /
    history_kind [U, H] (training.models.train.latest_history_events), for a tower that reads
    them."""
    user_tower.eval()
    n_users = len(user_profiles)
    k = min(k, item_embeddings.shape[0] - 1)  # a small catalog has fewer items than the pool
    out = np.zeros((n_users, k), dtype=np.int64)
    seen_rows = seen["user_index"].to_numpy(np.int64)
    seen_items = seen["item_index"].to_numpy(np.int64)
    for start in range(0, n_users, batch_size):
        rows = np.arange(start, min(start + batch_size, n_users))
        query = user_tower(
            torch.from_numpy(rows),
            torch.from_numpy(user_profiles[rows]),
            torch.from_numpy(histories[rows]),
            **{name: torch.from_numpy(v[rows]) for name, v in (events or {}).items()},
        ).numpy()
        scores = query @ item_embeddings.T
        scores[:, 0] = -np.inf
        if exclude is not None:
            scores[:, exclude] = -np.inf
        mask = (seen_rows >= start) & (seen_rows < rows[-1] + 1)
        scores[seen_rows[mask] - start, seen_items[mask]] = -np.inf
        top = np.argpartition(-scores, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1, kind="stable")
        out[rows] = np.take_along_axis(top, order, axis=1)
    return out


class NegativeSampler:
    """(user rows int64[B]) -> negatives int64[B, n_hard + n_sampled], seeded."""

    def __init__(
        self,
        hard: np.ndarray,
        item_counts: np.ndarray,
        n_hard: int,
        n_sampled: int,
        seed: int,
    ) -> None:
        self.hard = torch.as_tensor(hard, dtype=torch.int64)  # [U, K]
        weights = np.asarray(item_counts, dtype=np.float64).copy()
        weights[0] = 0.0
        self.weights = torch.as_tensor(weights / weights.sum())
        self.n_hard, self.n_sampled = n_hard, n_sampled
        self.generator = torch.Generator().manual_seed(seed)

    def __call__(self, users: torch.Tensor) -> torch.Tensor:
        parts = []
        if self.n_hard:
            cols = torch.randint(
                0, self.hard.shape[1], (len(users), self.n_hard), generator=self.generator
            )
            parts.append(self.hard[users.unsqueeze(1), cols])
        if self.n_sampled:
            drawn = torch.multinomial(
                self.weights, len(users) * self.n_sampled, True, generator=self.generator
            )
            parts.append(drawn.view(len(users), self.n_sampled))
        return torch.cat(parts, dim=1)


def history_negatives(
    history: torch.Tensor, basket: torch.Tensor, n: int, generator: torch.Generator
) -> torch.Tensor:
    """Buy-again negatives: history int64[B, H] (0 = padding), basket int64[B, L] (the items
    bought together with the example's item, which are not negatives) -> int64[B, n] drawn
    uniformly over the distinct items of the history, as serving offers each earlier item once
    (drawing history positions would offer an item as often as it was bought, and cancel the
    very frequency signal the ranker must learn). A draw in the basket, or a user without
    history, becomes item 0, the unknown item."""
    filled = history > 0
    copies = (history.unsqueeze(2) == history.unsqueeze(1)).sum(dim=2)  # [B, H]
    weights = torch.where(filled, 1.0 / copies.clamp(min=1).to(torch.float32), 0.0)
    empty = ~filled.any(dim=1, keepdim=True)  # [B, 1]
    weights = weights.masked_fill(empty, 1.0)  # any position; masked to item 0 below
    position = torch.multinomial(weights, n, replacement=True, generator=generator)
    picked = history.gather(1, position).masked_fill(empty, 0)
    in_basket = (picked.unsqueeze(-1) == basket.unsqueeze(1)).any(dim=-1)
    return picked.masked_fill(in_basket, 0)
