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


def test_large_embedding_tables_train_with_sparse_gradients(monkeypatch) -> None:
    """Tables above SPARSE_EMBEDDING_ROWS step with SparseAdam (only the rows a batch touched
    move); the rest with AdamW; afterwards the tables are plain again (for export)."""
    import training.models.train as train_module

    monkeypatch.setattr(train_module, "SPARSE_EMBEDDING_ROWS", 50)
    torch.manual_seed(0)
    big, small = nn.Embedding(100, 4), nn.Embedding(10, 4)
    model = nn.ModuleDict({"big": big, "small": small})
    before_big, before_small = big.weight.detach().clone(), small.weight.detach().clone()

    def loss(batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return (big(batch["items"]).sum(1) + small(batch["items"] % 10).sum(1)).pow(2).mean()

    examples = {"items": torch.tensor([3, 7]), "user_index": torch.zeros(2, dtype=torch.long)}
    fit(model, loss, examples, FitConfig(epochs=1, batch_size=2, lr=0.1, user_dropout=0.0),
        desc="t", progress=False)  # fmt: skip
    moved = (big.weight.detach() != before_big).any(1)
    assert moved.nonzero().flatten().tolist() == [3, 7]  # only the rows the batch used
    assert (small.weight.detach() != before_small).any()
    assert not big.sparse and not small.sparse
