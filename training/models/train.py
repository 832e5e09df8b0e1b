"""Mini-batch training loop shared by both models, and the example tensors they train on.

Examples are every training interaction with the history seen *before* it
(services.common.features.sliding_histories), exactly what the feature service would serve.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm import tqdm

from services.common.features import sliding_histories
from training import distributed
from training.encode import EncodedCatalog

Batch = dict[str, torch.Tensor]


@dataclass(frozen=True)
class FitConfig:
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float = 0.0
    user_dropout: float = 0.1  # share of examples whose user id is replaced by 0 (unknown)
    seed: int = 0


def has_baskets(indexed: pd.DataFrame) -> bool:
    """Whether every event names its order (basket): the canonical order_id column."""
    return "order_id" in indexed and bool(len(indexed)) and bool((indexed["order_id"] != "").all())


def basket_starts(users: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Events sorted by (user, time) -> int64[N]: the row of the first event of each event's
    basket (a run of consecutive rows with the same user and order id)."""
    new = np.r_[True, (users[1:] != users[:-1]) | (orders[1:] != orders[:-1])]
    return np.flatnonzero(new)[np.cumsum(new) - 1]


def basket_items(indexed: pd.DataFrame, width: int) -> np.ndarray:
    """int64[N, width]: for each event (sorted by user, time), the items of its whole basket,
    0-padded (a basket longer than width keeps its first width items)."""
    users = indexed["user_index"].to_numpy(np.int64)
    items = indexed["item_index"].to_numpy(np.int64)
    start = basket_starts(users, indexed["order_id"].to_numpy())
    offset = np.arange(len(items)) - start
    keep = offset < width
    table = np.zeros((len(items), width), dtype=np.int64)
    table[start[keep], offset[keep]] = items[keep]  # row `start` holds its basket's items
    return table[start]


def make_examples(catalog: EncodedCatalog, indexed: pd.DataFrame) -> Batch:
    """Indexed events sorted by (user, time) -> tensors user_index [N], profile [N, P],
    history [N, H], items [N], ratings [N] (NaN for events without a rating).

    With baskets (order ids), an event's history is the one before its basket began: what the
    feature service serves when the next basket is recommended (nothing of it bought yet)."""
    users = indexed["user_index"].to_numpy(np.int64, copy=True)
    items = indexed["item_index"].to_numpy(np.int64, copy=True)
    history = sliding_histories(users, items, catalog.spec.history_len)
    if has_baskets(indexed):
        history = history[basket_starts(users, indexed["order_id"].to_numpy())]
    ratings = indexed["rating"].to_numpy(np.float32, copy=True)
    return {
        "user_index": torch.from_numpy(users),
        "profile": torch.from_numpy(catalog.user_profiles[users]),
        "history": torch.from_numpy(history),
        "items": torch.from_numpy(items),
        "ratings": torch.from_numpy(ratings),
    }


class _LossModule(nn.Module):
    """The loss as a module's forward, so DistributedDataParallel sees (and syncs) every
    parameter the loss uses, whatever model methods loss_fn calls."""

    def __init__(self, model: nn.Module, loss_fn: Callable[[Batch], torch.Tensor]) -> None:
        super().__init__()
        self.model = model
        self._loss_fn = loss_fn

    def forward(self, batch: Batch) -> torch.Tensor:
        return self._loss_fn(batch)


def fit(
    model: nn.Module,
    loss_fn: Callable[[Batch], torch.Tensor],
    examples: Batch,
    config: FitConfig,
    *,
    desc: str,
    progress: bool = True,
) -> dict[str, float | list[float]]:
    """Adam(W) over shuffled mini-batches; returns per-epoch mean losses and seconds.

    Under torchrun (training.distributed) the model is wrapped in DistributedDataParallel and
    every rank takes its interleaved share of each global batch: same seed, same permutation,
    same global batch size and step count as one process; DDP averages the gradients."""
    ctx = distributed.current()
    generator = torch.Generator().manual_seed(config.seed)
    step: nn.Module = _LossModule(model, loss_fn)
    if ctx is not None:
        model.to(ctx.device)
        step = nn.parallel.DistributedDataParallel(
            step, device_ids=[ctx.local_rank] if ctx.backend == "nccl" else None
        )
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay
    )
    n = len(examples["items"])
    n_batches = (n + config.batch_size - 1) // config.batch_size
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(n, generator=generator)
        total = 0.0
        bar = tqdm(
            range(n_batches),
            desc=f"{desc} epoch {epoch + 1}/{config.epochs}",
            disable=None if progress else True,  # None: no bar unless a TTY
            mininterval=0.5,
            leave=False,
            unit="batch",
        )
        for b in bar:
            rows = order[b * config.batch_size : (b + 1) * config.batch_size]
            drop = None
            if config.user_dropout > 0:
                drop = torch.rand(len(rows), generator=generator) < config.user_dropout
            if ctx is not None:  # this rank's share of the global batch
                share = slice(ctx.rank, None, ctx.world_size)
                rows, drop = rows[share], (drop[share] if drop is not None else None)
            batch = {k: v[rows] for k, v in examples.items()}
            if drop is not None:
                batch["user_index"] = batch["user_index"].masked_fill(drop, 0)
            if ctx is not None and ctx.device.type != "cpu":
                batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
            loss = step(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach())
            bar.set_postfix(loss=f"{total / (b + 1):.4f}")
        losses.append(distributed.mean_across_ranks(total / n_batches))
        if progress and distributed.is_main():
            tqdm.write(f"  {desc} epoch {epoch + 1}/{config.epochs}: loss {losses[-1]:.4f}")
    model.to("cpu").eval()
    return {"epoch_losses": losses, "seconds": time.perf_counter() - start}
