"""Feature service settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from services.contract.errors import ConfigError
from services.feature.eventlog import FSYNC_MODES, LogSettings
from services.platform.config import (
    BundleSettings,
    Env,
    ServerSettings,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_path,
    env_str,
)

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
    """RECSERVE_FEATURE_LOG_DIR            state/feature-log  ("none": no log, feedback is lost;
                                                           relative: to the directory the
                                                           service starts in, made absolute)
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
        if directory.lower() not in _DISABLED:  # relative: to the start-up directory
            path = env_path("RECSERVE_FEATURE_LOG_DIR", DEFAULT_LOG_DIR, env)
            log_settings = LogSettings(
                path, fsync, delay_ms / 1000.0, max_records, segment_mb << 20
            )
        return cls(
            log=log_settings,
            snapshot_every=env_int(
                "RECSERVE_FEATURE_SNAPSHOT_EVERY", 100_000, min_value=0, env=env
            ),
            keep_segments=env_bool("RECSERVE_FEATURE_KEEP_SEGMENTS", True, env),
        )


# --- Feature store backend (memory | redis) -------------------------------------------------
BACKENDS = ("memory", "redis")
_REDIS_SCHEMES = ("redis", "rediss", "unix")


@dataclass(frozen=True)
class StoreConfig:
    """RECSERVE_FEATURE_BACKEND: "memory" (one replica, default) or "redis" (live user state
    shared by several replicas; see docs/feature_store.md). The RECSERVE_REDIS_* settings are
    read and checked whatever the backend, so a typo fails at start-up either way."""

    backend: str
    redis_url: str  # RECSERVE_REDIS_URL
    redis_prefix: str  # RECSERVE_REDIS_PREFIX: key namespace, e.g. one per deployment
    redis_timeout_s: float  # RECSERVE_REDIS_TIMEOUT_SECONDS: connect and per-command timeout
    redis_allow_non_durable: bool  # RECSERVE_REDIS_ALLOW_NON_DURABLE: skip the AOF check (dev)

    @classmethod
    def from_env(cls, env: Env | None = None) -> StoreConfig:
        url = env_str("RECSERVE_REDIS_URL", "redis://127.0.0.1:6379/0", env)
        if urlsplit(url).scheme not in _REDIS_SCHEMES:
            raise ConfigError(
                f"RECSERVE_REDIS_URL must start with one of {', '.join(_REDIS_SCHEMES)}://"
            )
        prefix = env_str("RECSERVE_REDIS_PREFIX", "recserve", env)
        if any(c.isspace() for c in prefix):
            raise ConfigError(f"RECSERVE_REDIS_PREFIX={prefix!r} must not contain whitespace")
        return cls(
            backend=env_choice("RECSERVE_FEATURE_BACKEND", "memory", BACKENDS, env),
            redis_url=url,
            redis_prefix=prefix,
            redis_timeout_s=env_float(
                "RECSERVE_REDIS_TIMEOUT_SECONDS", 1.0, min_value=0.001, max_value=60.0, env=env
            ),
            redis_allow_non_durable=env_bool("RECSERVE_REDIS_ALLOW_NON_DURABLE", False, env),
        )
