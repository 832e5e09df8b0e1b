"""Ranker negatives: retrieval candidates exclude seen items; the sampler is seeded and shaped."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from training.models.negatives import NegativeSampler, retrieval_candidates


class _FixedTower(torch.nn.Module):
    """Every user's query is the first basis vector."""

    def forward(self, user_index, profile, history):
        out = torch.zeros(len(user_index), 2)
        out[:, 0] = 1.0
        return out


def test_retrieval_candidates_are_best_unseen_items_in_order() -> None:
    items = np.array([[0, 0], [0.9, 0], [0.8, 0], [0.7, 0], [0.1, 0]], dtype=np.float32)
    seen = pd.DataFrame({"user_index": [1], "item_index": [1]})
    top = retrieval_candidates(
        _FixedTower(), items, np.zeros((2, 3), np.int64), np.zeros((2, 4), np.int64), seen, k=2
    )
    assert top.tolist() == [[1, 2], [2, 3]]


def test_sampler_draws_hard_and_popular_negatives_deterministically() -> None:
    hard = np.array([[0, 0], [5, 6]])
    counts = np.array([100, 0, 1, 0, 0, 0, 0])  # row 0 never drawn, item 1 never drawn
    first = NegativeSampler(hard, counts, 3, 2, seed=7)(torch.tensor([1, 1]))
    again = NegativeSampler(hard, counts, 3, 2, seed=7)(torch.tensor([1, 1]))
    assert first.shape == (2, 5)
    assert set(first[:, :3].flatten().tolist()) <= {5, 6}
    assert set(first[:, 3:].flatten().tolist()) == {2}
    assert torch.equal(first, again)
