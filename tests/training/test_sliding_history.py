"""Training histories: the one definition (services.contract.features.sliding_histories), whole or
for some rows, and the per-batch SlidingHistory that large logs train with."""

from __future__ import annotations

import numpy as np
import torch

from services.contract.features import pad_history, sliding_histories
from training.models.train import SlidingHistory


def naive(users: np.ndarray, items: np.ndarray, length: int) -> np.ndarray:
    """What the feature service would serve before each event: the user's earlier items."""
    out = np.zeros((len(items), length), dtype=np.int64)
    for n in range(len(items)):
        earlier = [items[m] for m in range(n) if users[m] == users[n]]
        out[n] = pad_history(earlier[::-1], length)
    return out


def log(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    users = np.sort(rng.integers(0, 7, 120))  # sorted by user; time order within a user
    return users, rng.integers(1, 40, 120)


def test_whole_log_matches_the_served_history() -> None:
    users, items = log()
    np.testing.assert_array_equal(sliding_histories(users, items, 5), naive(users, items, 5))


def test_rows_give_the_same_rows_of_the_whole() -> None:
    users, items = log(1)
    rows = np.array([0, 3, 17, 119, 64, 64])
    whole = sliding_histories(users, items, 8)
    np.testing.assert_array_equal(sliding_histories(users, items, 8, rows), whole[rows])


def test_sliding_history_builds_each_batch() -> None:
    users, items = log(2)
    lazy = SlidingHistory(users, items, 6, None)
    rows = torch.tensor([5, 1, 99])
    assert len(lazy) == 120
    np.testing.assert_array_equal(lazy[rows].numpy(), naive(users, items, 6)[rows.numpy()])
    np.testing.assert_array_equal(lazy.numpy(), naive(users, items, 6))
