"""The settings every server shares: the bundle to serve and the gRPC server's own settings.

The typed environment readers (env_str, env_int, ...) live in services.platform.env, one layer
below; they are re-exported here for the services' config modules.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from services.contract.bundle import Bundle, resolve_bundle_dir
from services.platform.env import (
    Env,
    env_bool,
    env_choice,
    env_float,
    env_int,
    env_path,
    env_str,
)
from services.platform.security import SecuritySettings

__all__ = [
    "BundleSettings",
    "Env",
    "ServerSettings",
    "env_bool",
    "env_choice",
    "env_float",
    "env_int",
    "env_path",
    "env_str",
    "load_bundle_from_env",
]


@dataclass(frozen=True)
class BundleSettings:
    """RECSERVE_ARTIFACTS (default "artifacts") and RECSERVE_BUNDLE_VERSION (default "latest")."""

    artifacts: Path
    version: str

    @classmethod
    def from_env(cls, env: Env | None = None) -> BundleSettings:
        return cls(
            artifacts=Path(env_str("RECSERVE_ARTIFACTS", "artifacts", env)),
            version=env_str("RECSERVE_BUNDLE_VERSION", "latest", env),
        )

    def load(self, verify: bool = True) -> Bundle:
        """Resolve and load (checksums verified); raises BundleError when missing or corrupt."""
        return Bundle.load(resolve_bundle_dir(self.artifacts, self.version), verify=verify)


def load_bundle_from_env(env: Env | None = None, verify: bool = True) -> Bundle:
    return BundleSettings.from_env(env).load(verify=verify)


@dataclass(frozen=True)
class ServerSettings:
    """What every gRPC server reads: where to listen, how to stop, how to log, and its security
    (TLS, API keys: services.platform.security, off by default)."""

    host: str
    port: int
    grace_s: float
    max_message_bytes: int
    reuse_port: bool
    log_level: str
    log_format: str
    security: SecuritySettings = field(default_factory=SecuritySettings)

    @classmethod
    def from_env(cls, port_var: str, default_port: int, env: Env | None = None) -> ServerSettings:
        return cls(
            host=env_str("RECSERVE_HOST", "127.0.0.1", env),
            port=env_int(port_var, default_port, min_value=0, max_value=65535, env=env),
            grace_s=env_float("RECSERVE_GRACE_SECONDS", 5.0, min_value=0.0, env=env),
            max_message_bytes=env_int(
                "RECSERVE_MAX_MESSAGE_BYTES", 4 << 20, min_value=1 << 16, env=env
            ),
            reuse_port=env_bool("RECSERVE_REUSE_PORT", False, env),
            log_level=env_choice(
                "RECSERVE_LOG_LEVEL", "info", ("debug", "info", "warning", "error"), env
            ).upper(),
            log_format=env_choice("RECSERVE_LOG_FORMAT", "json", ("json", "text"), env),
            security=SecuritySettings.from_env(env),
        )
