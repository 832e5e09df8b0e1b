"""User-value service settings, read once from the environment at start-up."""

from __future__ import annotations

from dataclasses import dataclass

from services.platform.config import BundleSettings, Env, ServerSettings, env_int

SERVICE_NAME = "recserve.v1.UserValueService"


@dataclass(frozen=True)
class UserValueConfig:
    server: ServerSettings
    bundle: BundleSettings
    max_users: int  # user ids per Score call
    cache_users: int  # scores kept per (user, day, activity); 0 = no cache

    @classmethod
    def from_env(cls, env: Env | None = None) -> UserValueConfig:
        return cls(
            server=ServerSettings.from_env("RECSERVE_USERVALUE_PORT", 50055, env),
            bundle=BundleSettings.from_env(env),
            # at most services.uservalue.scorer.MAX_USERS_PER_CALL (the scorer's own cap)
            max_users=env_int(
                "RECSERVE_USERVALUE_MAX_USERS", 1_000, min_value=1, max_value=1_000, env=env
            ),
            cache_users=env_int(
                "RECSERVE_USERVALUE_CACHE_USERS",
                100_000,
                min_value=0,
                max_value=10_000_000,
                env=env,
            ),
        )
