"""Data-parallel training under torchrun: DistributedDataParallel, gloo on CPU, NCCL on GPU.

    torchrun --nproc_per_node=2 -m training train --tiny          # one machine, 2 processes
    torchrun --nnodes=2 --node_rank=0 --nproc_per_node=4 \\
        --rdzv_backend=c10d --rdzv_endpoint=head:29400 -m training train   # several machines

torchrun sets RANK / WORLD_SIZE / LOCAL_RANK; `init_from_env` joins the process group (a no-op
when WORLD_SIZE is unset or 1, so plain `python -m training` is unchanged). Every rank runs the
same pipeline with the same seed; `training.models.train.fit` wraps the model in DDP and gives
each rank its share of every global mini-batch (same global batch size and number of steps as
one process), so gradients are averaged over the whole batch. Only rank 0 evaluates, exports and
publishes the bundle; the other ranks wait for it and return the same bundle path.
"""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def device(self) -> torch.device:
        if self.backend == "nccl":
            return torch.device("cuda", self.local_rank)
        return torch.device("cpu")


def _backend() -> str:
    """RECSERVE_DDP_BACKEND (gloo | nccl), default: nccl when CUDA is available, else gloo."""
    choice = os.environ.get("RECSERVE_DDP_BACKEND", "").strip().lower()
    if choice in ("gloo", "nccl"):
        return choice
    if choice:
        raise ValueError(f"RECSERVE_DDP_BACKEND={choice!r} must be gloo or nccl")
    return "nccl" if torch.cuda.is_available() else "gloo"


def init_from_env(timeout_s: float = 600.0) -> DistContext | None:
    """Join the torchrun process group; None when not launched with more than one process."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    if not dist.is_initialized():
        backend = _backend()
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return current()


def current() -> DistContext | None:
    """The joined process group, or None (single process)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return None
    return DistContext(
        rank=dist.get_rank(),
        world_size=dist.get_world_size(),
        local_rank=int(os.environ.get("LOCAL_RANK", "0")),
        backend=dist.get_backend(),
    )


def is_main() -> bool:
    ctx = current()
    return ctx is None or ctx.is_main


def barrier() -> None:
    if current() is not None:
        dist.barrier()


def broadcast_str(value: str) -> str:
    """Rank 0's value on every rank (e.g. the bundle version)."""
    ctx = current()
    if ctx is None:
        return value
    # Bytes in a tensor, not broadcast_object_list: that one pickles, and nothing here unpickles.
    raw = value.encode()
    size = torch.tensor([len(raw)], dtype=torch.int64, device=ctx.device)
    dist.broadcast(size, src=0)
    buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=ctx.device)
    if ctx.is_main:
        buf.copy_(torch.frombuffer(bytearray(raw), dtype=torch.uint8))
    dist.broadcast(buf, src=0)
    return bytes(buf.cpu().tolist()).decode()


def mean_across_ranks(value: float) -> float:
    ctx = current()
    if ctx is None:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=ctx.device)
    dist.all_reduce(t)
    return float(t.item()) / ctx.world_size


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
