"""Retrieval service settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from services.platform.config import (
    BundleSettings,
    Env,
    ServerSettings,
    env_float,
    env_int,
)
from services.platform.item_sync import feature_addr_from_env, sync_interval_from_env

SERVICE_NAME = "recserve.v1.RetrievalService"


@dataclass(frozen=True)
class RetrievalConfig:
    server: ServerSettings
    bundle: BundleSettings
    max_k: int
    tag_temperature: float
    intra_op_threads: int
    exact_below: int  # eligible-set size under which filtered queries are scored exactly
    faiss_threads: int
    # The feature service whose registry of added items this process syncs from
    # (RECSERVE_FEATURE_ADDR, as the gateway names it; unset = no sync: only AddItems calls
    # reach this process) and how often (RECSERVE_ITEM_SYNC_S, 0 = off).
    feature_addr: str | None = None
    item_sync_s: float = 5.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> RetrievalConfig:
        return cls(
            server=ServerSettings.from_env("RECSERVE_RETRIEVAL_PORT", 50053, env),
            bundle=BundleSettings.from_env(env),
            max_k=env_int("RECSERVE_RETRIEVAL_MAX_K", 1_000, min_value=1, env=env),
            tag_temperature=env_float(
                "RECSERVE_TAG_TEMPERATURE", 0.1, min_value=1e-3, max_value=100.0, env=env
            ),
            intra_op_threads=env_int(
                "RECSERVE_RETRIEVAL_THREADS", 1, min_value=1, max_value=64, env=env
            ),
            exact_below=env_int("RECSERVE_RETRIEVAL_EXACT_BELOW", 0, min_value=0, env=env),
            faiss_threads=env_int("RECSERVE_FAISS_THREADS", 1, min_value=1, max_value=64, env=env),
            feature_addr=feature_addr_from_env(env),
            item_sync_s=sync_interval_from_env(env),
        )
