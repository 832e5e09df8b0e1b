"""Ranking service settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from services.contract.onnx import CUDA
from services.platform.config import (
    BundleSettings,
    Env,
    ServerSettings,
    env_choice,
    env_float,
    env_int,
)
from services.platform.item_sync import feature_addr_from_env, sync_interval_from_env

SERVICE_NAME = "recserve.v1.RankingService"


@dataclass(frozen=True)
class RankingConfig:
    server: ServerSettings
    bundle: BundleSettings
    device: str  # auto (CUDA if it loads, else CPU) | cpu | cuda (CUDA required)
    max_candidates: int
    intra_op_threads: int
    max_batch: int  # requests merged into one ONNX Runtime call (1 = no batching)
    max_delay_ms: float  # how long a batch that is not full waits for more (0 = never)
    executor: str  # where a batch runs: auto (thread on CUDA, inline on CPU) | inline | thread
    # The feature service whose registry of added items this process syncs from, so the ranker
    # scores each by its own features (RECSERVE_FEATURE_ADDR, as retrieval and the gateway name
    # it; unset = no sync: added items score as row 0) and how often (RECSERVE_ITEM_SYNC_S).
    feature_addr: str | None = None
    item_sync_s: float = 5.0

    @property
    def prefer_gpu(self) -> bool:
        return self.device != "cpu"

    @classmethod
    def from_env(cls, env: Env | None = None) -> RankingConfig:
        return cls(
            server=ServerSettings.from_env("RECSERVE_RANKING_PORT", 50054, env),
            bundle=BundleSettings.from_env(env),
            device=env_choice("RECSERVE_RANKING_DEVICE", "auto", ("auto", "cpu", "cuda"), env),
            max_candidates=env_int(
                "RECSERVE_RANKING_MAX_CANDIDATES", 1_000, min_value=1, max_value=100_000, env=env
            ),
            intra_op_threads=env_int(
                "RECSERVE_RANKING_THREADS", 1, min_value=1, max_value=64, env=env
            ),
            max_batch=max_batch_from_env(env),
            max_delay_ms=env_float(
                "RECSERVE_RANKING_MAX_DELAY_MS", 0.0, min_value=0.0, max_value=100.0, env=env
            ),
            executor=env_choice(
                "RECSERVE_RANKING_EXECUTOR", "auto", ("auto", "inline", "thread"), env
            ),
            feature_addr=feature_addr_from_env(env),
            item_sync_s=sync_interval_from_env(env),
        )

    def inline_for(self, provider: str) -> bool:
        """Run batches on the event loop? auto: on CPU yes (no thread hand-off per batch), on
        CUDA no (the loop keeps receiving while the device works)."""
        if self.executor == "auto":
            return provider != CUDA
        return self.executor == "inline"


def max_batch_from_env(env: Env | None = None) -> int:
    """RECSERVE_RANKING_MAX_BATCH: requests merged into one ranker call, by the ranking service's
    batcher and by an embedded gateway's (services.ranking.batcher.RankBatching), and, in an
    embedded gateway, into one user-tower call (InProcessRetrieval); 1 = no batching."""
    return env_int("RECSERVE_RANKING_MAX_BATCH", 16, min_value=1, max_value=1024, env=env)
