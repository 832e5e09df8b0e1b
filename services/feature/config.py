"""Feature service settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.common.config import (
    BundleSettings,
    Env,
    ServerSettings,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_str,
)
from services.feature.eventlog import FSYNC_MODES, LogSettings

SERVICE_NAME = "recserve.v1.FeatureService"


@dataclass(frozen=True)
class FeatureConfig:
    server: ServerSettings
    bundle: BundleSettings
    max_ids: int  # user/item ids (and recent items) per call
    max_events: int  # events per ApplyEvents batch
    durability: DurabilitySettings

    @classmethod
    def from_env(cls, env: Env | None = None) -> FeatureConfig:
        return cls(
            server=ServerSettings.from_env("RECSERVE_FEATURE_PORT", 50052, env),
            bundle=BundleSettings.from_env(env),
            max_ids=env_int("RECSERVE_FEATURE_MAX_IDS", 1_000, min_value=1, env=env),
            max_events=env_int("RECSERVE_FEATURE_MAX_EVENTS", 10_000, min_value=1, env=env),
            durability=DurabilitySettings.from_env(env),
        )


# --- durable feedback (issue 6): event log + snapshots; shared by the embedded gateway -----------
DEFAULT_LOG_DIR = "state/feature-log"
_DISABLED = frozenset({"none", "off", "disabled"})


@dataclass(frozen=True)
class DurabilitySettings:
    """RECSERVE_FEATURE_LOG_DIR            state/feature-log  ("none": no log, feedback is lost)
    RECSERVE_FEATURE_FSYNC              group              group | always | off
    RECSERVE_FEATURE_GROUP_DELAY_MS     0                  wait this long for more appends
    RECSERVE_FEATURE_GROUP_MAX_RECORDS  512                batches covered by one fsync, at most
    RECSERVE_FEATURE_SEGMENT_MB         64                 log segment size before rotation
    RECSERVE_FEATURE_SNAPSHOT_EVERY     100000             events between snapshots (0: on stop)
    RECSERVE_FEATURE_KEEP_SEGMENTS      true               keep segments a snapshot covers"""

    log: LogSettings | None
    snapshot_every: int = 100_000
    keep_segments: bool = True

    @classmethod
    def from_env(cls, env: Env | None = None) -> DurabilitySettings:
        directory = env_str("RECSERVE_FEATURE_LOG_DIR", DEFAULT_LOG_DIR, env)
        fsync = env_choice("RECSERVE_FEATURE_FSYNC", "group", FSYNC_MODES, env)
        delay_ms = env_float(
            "RECSERVE_FEATURE_GROUP_DELAY_MS", 0.0, min_value=0.0, max_value=1000.0, env=env
        )
        max_records = env_int(
            "RECSERVE_FEATURE_GROUP_MAX_RECORDS", 512, min_value=1, max_value=1 << 20, env=env
        )
        segment_mb = env_int("RECSERVE_FEATURE_SEGMENT_MB", 64, min_value=1, env=env)
        log_settings = None
        if directory.lower() not in _DISABLED:
            log_settings = LogSettings(
                Path(directory), fsync, delay_ms / 1000.0, max_records, segment_mb << 20
            )
        return cls(
            log=log_settings,
            snapshot_every=env_int(
                "RECSERVE_FEATURE_SNAPSHOT_EVERY", 100_000, min_value=0, env=env
            ),
            keep_segments=env_bool("RECSERVE_FEATURE_KEEP_SEGMENTS", True, env),
        )
