"""Process settings for a training run, applied by the code that starts one (never at import).

prefer_passive_omp: before torch loads (the training commands call it first thing).
start: at the start of build_bundle_from_events, on every rank.
"""

from __future__ import annotations

import dataclasses
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.steps.config import TrainConfig

TORCH_THREADS = 2


def prefer_passive_omp() -> None:
    """OpenMP threads that spin while waiting collapse on a busy 2-core box (measured: a ranker
    epoch 7 s -> 40 s with two other busy processes; 10 s with PASSIVE). libgomp reads
    OMP_WAIT_POLICY once, when torch loads, so this only helps before the first `import torch`:
    the training commands (python -m training, recserve train, python -m training.evaluate)
    call it before importing anything that loads torch (the Makefile exports it; tests/conftest.py
    and bench.synthetic_bundle set it the same way before their imports). An explicit
    OMP_WAIT_POLICY in the environment wins."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def start(config: TrainConfig) -> TrainConfig:
    """The resolved config (epochs from the preset; under torchrun, the version every rank
    names: the one rank 0 publishes), torch's threads (TORCH_THREADS shared by the ranks) and
    its seed."""
    import torch

    from training import distributed
    from training.bundle import new_version

    cfg = config.resolved()
    if distributed.current() is not None:  # every rank names the bundle rank 0 publishes
        cfg = dataclasses.replace(
            cfg, version=distributed.broadcast_str(cfg.version or new_version())
        )
    ctx = distributed.current()
    torch.set_num_threads(max(1, TORCH_THREADS // (ctx.world_size if ctx else 1)))
    torch.manual_seed(cfg.seed)
    return cfg
