"""fit() with an example budget per epoch: a large log trains on a fresh sample each epoch."""

from __future__ import annotations

import torch
from torch import nn

from training.models.train import FitConfig, fit


def test_each_epoch_draws_at_most_the_budget_afresh() -> None:
    seen: list[list[int]] = [[]]
    weight = nn.Linear(1, 1)

    def loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        seen[-1].extend(batch["items"].tolist())
        return weight(batch["items"].float().unsqueeze(1)).mean() * 0.0

    examples = {"items": torch.arange(100), "user_index": torch.zeros(100, dtype=torch.long)}
    config = FitConfig(epochs=1, batch_size=8, lr=0.1, user_dropout=0.0, examples_per_epoch=30)
    fit(weight, loss, examples, config, desc="t", progress=False)
    first = seen[-1]
    seen.append([])
    fit(weight, loss, examples, FitConfig(**{**config.__dict__, "seed": 1}), desc="t",
        progress=False)  # fmt: skip
    assert len(first) == len(set(first)) == 30 and len(seen[-1]) == 30
    assert set(first) != set(seen[-1])  # another seed, another sample
