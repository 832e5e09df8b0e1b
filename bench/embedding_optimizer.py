"""Seconds per two-tower training step at catalog scale, dense AdamW vs sparse gradients +
SparseAdam for the large embedding tables (training.models.train.SPARSE_EMBEDDING_ROWS).

    python -m bench.embedding_optimizer --items 1000000 --users 1000000 --steps 20

Both runs train the same model on the same random batches (batch 1024, history 50); only the
optimizer path differs. Prints ms per step for each and their ratio.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import training.models.train as train_module
from training.models.train import FitConfig, fit
from training.models.two_tower import ItemTower, TwoTower, TwoTowerConfig, UserTower


def step_ms(n_users: int, n_items: int, steps: int, sparse: bool, batch: int = 1024) -> float:
    torch.manual_seed(0)
    cfg = TwoTowerConfig()
    tags = np.zeros((n_items, 12), np.float32)
    attrs = np.zeros((n_items, 1), np.int64)
    user = UserTower(n_users, n_items, (6, 9), tags, attrs, (10,), cfg)
    model = TwoTower(user, ItemTower(n_items, tags, attrs, (10,), cfg), np.zeros(n_items), 0.07)
    n = steps * batch
    examples = {
        "user_index": torch.randint(1, n_users, (n,)),
        "profile": torch.zeros(n, 2, dtype=torch.long),
        "history": torch.randint(0, n_items, (n, 50)),
        "items": torch.randint(1, n_items, (n,)),
    }
    default = train_module.SPARSE_EMBEDDING_ROWS
    # The id tables (users, items) go sparse; every smaller table stays dense, as in training.
    train_module.SPARSE_EMBEDDING_ROWS = (
        min(default, min(n_users, n_items) - 1) if sparse else 10**12
    )
    try:
        start = time.perf_counter()
        config = FitConfig(epochs=1, batch_size=batch, lr=3e-3)
        fit(model, lambda b: model.loss(b["user_index"], b["profile"], b["history"], b["items"]),
            examples, config, desc="bench", progress=False)  # fmt: skip
        return (time.perf_counter() - start) / steps * 1e3
    finally:
        train_module.SPARSE_EMBEDDING_ROWS = default


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.embedding_optimizer")
    parser.add_argument("--items", type=int, default=1_000_000, help="default: %(default)s")
    parser.add_argument("--users", type=int, default=1_000_000, help="default: %(default)s")
    parser.add_argument("--steps", type=int, default=20, help="default: %(default)s")
    args = parser.parse_args(argv)
    torch.set_num_threads(2)
    dense = step_ms(args.users + 1, args.items + 1, args.steps, sparse=False)
    sparse = step_ms(args.users + 1, args.items + 1, args.steps, sparse=True)
    print(f"{args.items:,} items, {args.users:,} users: dense AdamW {dense:.0f} ms/step, "
          f"sparse + SparseAdam {sparse:.0f} ms/step ({dense / sparse:.1f}x)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
