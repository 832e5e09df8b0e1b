"""Mini-batch training loop shared by both models, and the example tensors they train on.

Examples are every training interaction with the history seen *before* it
(services.contract.features.sliding_histories), exactly what the feature service would serve.
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

from services.contract.features import (
    HISTORY_EVENT_INPUTS,
    UNKNOWN_AGE,
    latest_values,
    sliding_histories,
    sliding_values,
)
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
    # At most this many examples per epoch, drawn afresh each epoch (None: all). A 20M-event
    # log trains in bounded time; every event keeps the same chance of being seen.
    examples_per_epoch: int | None = None


class SlidingHistory:
    """history int64[N, H] of an event log sorted by (user, time), built per batch: indexing
    with row numbers gives those rows' histories (services.contract.features.sliding_histories),
    so N x H never has to fit in memory (20M events x 50 = 8 GB as int64).

    With `times` (int64[N] unix s), the rows give the history's ages instead: float32[R, H],
    seconds from each history event to the row's own event (history_age; -1 past the
    history). With `tokens` (int64[N]), their event tokens (history_kind; 0 past it)."""

    def __init__(
        self,
        users: np.ndarray,
        items: np.ndarray,
        history_len: int,
        starts: np.ndarray | None,
        *,
        times: np.ndarray | None = None,
        tokens: np.ndarray | None = None,
    ) -> None:
        """starts: each row's basket start (its history is the one before the basket began);
        None: each row's own history."""
        self.users, self.items, self.history_len = users, items, history_len
        self.starts = np.arange(len(items)) if starts is None else starts
        self.times, self.tokens = times, tokens

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, rows: torch.Tensor | np.ndarray) -> torch.Tensor:
        rows = rows.numpy() if isinstance(rows, torch.Tensor) else np.asarray(rows)
        return torch.from_numpy(self._rows(rows))

    def numpy(self) -> np.ndarray:
        return self._rows(np.arange(len(self.items)))

    def _rows(self, rows: np.ndarray) -> np.ndarray:
        starts = self.starts[rows]
        if self.tokens is not None:
            return sliding_values(self.users, self.tokens, self.history_len, starts)
        if self.times is None:
            return sliding_histories(self.users, self.items, self.history_len, starts)
        return history_ages_before(self.users, self.times, self.history_len, starts, rows)


def history_ages_before(
    users: np.ndarray, times: np.ndarray, history_len: int, starts: np.ndarray, rows: np.ndarray
) -> np.ndarray:
    """float32[R, H]: for each row, the ages (its own time minus the event's) of the events in
    the history before `starts` (that row's basket start), -1 past the history: the
    history_age input the feature service feeds at the moment of that row's event."""
    before = sliding_values(users, np.asarray(times, dtype=np.int64) + 1, history_len, starts)
    now = np.asarray(times, dtype=np.int64)[rows][:, None]
    ages = np.maximum(now - (before - 1), 0).astype(np.float32)
    return np.where(before > 0, ages, np.float32(UNKNOWN_AGE))


def history_events(batch: Batch | dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """The batch's history_age / history_kind (those it has), as keyword arguments of a user
    tower (torch tensors)."""
    return {name: torch.as_tensor(batch[name]) for name in HISTORY_EVENT_INPUTS if name in batch}


def event_token_values(indexed: pd.DataFrame) -> np.ndarray:
    """int64[N]: the events' tokens (training.encode.index_events' event_token column; events
    indexed without one count as "other", token 1)."""
    if "event_token" in indexed:
        return indexed["event_token"].to_numpy(np.int64, copy=True)
    return np.ones(len(indexed), dtype=np.int64)


def latest_history_events(
    catalog: EncodedCatalog, indexed: pd.DataFrame, now: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Each user's state at the end of `indexed` (sorted by user/time), as the feature service
    serves it: {"history": int64[U, H] (known items, most recent first), "history_age":
    float32[U, H] (seconds to `now`, -1 past the history), "history_kind": int64[U, H]}.

    now: float[U] per user row, the moment of the request (e.g. the user's first test event);
    None: each user's latest event (the age of the latest is 0)."""
    n_users, length = catalog.n_users, catalog.spec.history_len
    users = indexed["user_index"].to_numpy(np.int64)
    items = indexed["item_index"].to_numpy(np.int64)
    known = items > 0

    def latest(column: np.ndarray) -> np.ndarray:
        return latest_values(users, known, column, n_users, length)

    history = latest(items)
    when = latest(indexed["timestamp"].to_numpy(np.int64))
    kind = latest(event_token_values(indexed))
    if now is None:
        now = when[:, 0].astype(np.float64)
    ages = np.maximum(np.asarray(now, dtype=np.float64)[:, None] - when, 0.0).astype(np.float32)
    age = np.where(history > 0, ages, np.float32(UNKNOWN_AGE))
    return {"history": history, "history_age": age, "history_kind": kind}


# Above this many history entries (N x H) make_examples builds histories per batch.
LAZY_HISTORY_ENTRIES = 50_000_000


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
    history [N, H], history_age float32[N, H], history_kind int64[N, H] (SlidingHistory for
    large logs; services.contract.features HISTORY_EVENT_INPUTS), items [N], ratings [N] (NaN
    for events without a rating).

    With baskets (order ids), an event's history is the one before its basket began: what the
    feature service serves when the next basket is recommended (nothing of it bought yet)."""
    users = indexed["user_index"].to_numpy(np.int64, copy=True)
    items = indexed["item_index"].to_numpy(np.int64, copy=True)
    history_len = catalog.spec.history_len
    starts = basket_starts(users, indexed["order_id"].to_numpy()) if has_baskets(indexed) else None
    times = indexed["timestamp"].to_numpy(np.int64, copy=True)
    tokens = event_token_values(indexed)
    lazy = len(items) * history_len > LAZY_HISTORY_ENTRIES
    columns: dict[str, torch.Tensor | SlidingHistory] = {}
    for name, extra in (("history", {}), ("history_age", {"times": times}),
                        ("history_kind", {"tokens": tokens})):  # fmt: skip
        sliding = SlidingHistory(users, items, history_len, starts, **extra)
        columns[name] = sliding if lazy else torch.from_numpy(sliding.numpy())
    ratings = indexed["rating"].to_numpy(np.float32, copy=True)
    return {
        "user_index": torch.from_numpy(users),
        "profile": torch.from_numpy(catalog.user_profiles[users]),
        **columns,
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
    optimizer = _optimizer(model, config, distributed_run=ctx is not None)
    n_all = len(examples["items"])
    n = min(n_all, config.examples_per_epoch or n_all)
    n_batches = (n + config.batch_size - 1) // config.batch_size
    losses: list[float] = []
    start = time.perf_counter()
    model.train()
    for epoch in range(config.epochs):
        order = torch.randperm(n_all, generator=generator)[:n]
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
    for table in _large_tables(model):
        table.sparse = False  # back to the default for export and later use
    model.to("cpu").eval()
    return {"epoch_losses": losses, "seconds": time.perf_counter() - start}


# Embedding tables with more rows than this train with sparse gradients (SparseAdam): AdamW
# would read and write every row of a 1M x 48 table, and its two moment buffers, at every step
# although a batch touches a few thousand rows (the optimizer, not the model, was the cost).
SPARSE_EMBEDDING_ROWS = 100_000


def _large_tables(model: nn.Module) -> list[nn.Embedding]:
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.Embedding)
        and m.num_embeddings > SPARSE_EMBEDDING_ROWS
        and m.weight.requires_grad
    ]


class _Optimizers:
    """AdamW for the dense parameters and SparseAdam for the large embedding tables, stepped
    together (SparseAdam has no weight decay: the large tables train without it)."""

    def __init__(self, parts: list[torch.optim.Optimizer]) -> None:
        self.parts = parts

    def step(self) -> None:
        for part in self.parts:
            part.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        for part in self.parts:
            part.zero_grad(set_to_none=set_to_none)


def _optimizer(
    model: nn.Module, config: FitConfig, distributed_run: bool
) -> torch.optim.Optimizer | _Optimizers:
    tables = [] if distributed_run else _large_tables(model)  # NCCL has no sparse all-reduce
    sparse_ids = {id(t.weight) for t in tables}
    dense = [p for p in model.parameters() if id(p) not in sparse_ids]
    adamw = torch.optim.AdamW(dense, lr=config.lr, weight_decay=config.weight_decay)
    if not tables:
        return adamw
    for table in tables:
        table.sparse = True
    sparse = torch.optim.SparseAdam([t.weight for t in tables], lr=config.lr)
    return _Optimizers([adamw, sparse])
