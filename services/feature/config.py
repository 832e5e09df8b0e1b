"""Feature service settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import BundleSettings, Env, ServerSettings, env_int

SERVICE_NAME = "recserve.v1.FeatureService"


@dataclass(frozen=True)
class FeatureConfig:
    server: ServerSettings
    bundle: BundleSettings
    max_ids: int  # user/item ids (and recent items) per call
    max_events: int  # events per ApplyEvents batch

    @classmethod
    def from_env(cls, env: Env | None = None) -> FeatureConfig:
        return cls(
            server=ServerSettings.from_env("RECSERVE_FEATURE_PORT", 50052, env),
            bundle=BundleSettings.from_env(env),
            max_ids=env_int("RECSERVE_FEATURE_MAX_IDS", 1_000, min_value=1, env=env),
            max_events=env_int("RECSERVE_FEATURE_MAX_EVENTS", 10_000, min_value=1, env=env),
        )
