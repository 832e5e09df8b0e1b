"""Typed, validated environment variables and the settings every server shares.

Every reader raises ConfigError with the variable's name and the reason, so a service can fail
at start-up with one clear line (see services.common.server.run_main). Reading the process
environment (env=None) also records the value, default included, for the effective-configuration
line each service logs at start-up (services.common.env_names).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from services.common import env_names
from services.common.bundle import Bundle, resolve_bundle_dir
from services.common.errors import ConfigError
from services.common.security import SecuritySettings

Env = Mapping[str, str]
T = TypeVar("T")

_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def _raw(env: Env | None, name: str) -> str | None:
    value = (os.environ if env is None else env).get(name)
    return None if value is None or value.strip() == "" else value.strip()


def _noted(env: Env | None, name: str, value: T) -> T:
    if env is None:
        env_names.record(name, value)
    return value


def env_str(name: str, default: str, env: Env | None = None) -> str:
    value = _raw(env, name)
    return _noted(env, name, default if value is None else value)


def env_path(name: str, default: str, env: Env | None = None) -> Path:
    """A path setting, made absolute against the working directory at start-up (so where state
    goes is printed, and stays put whoever changes directory later)."""
    raw = _raw(env, name)
    return _noted(env, name, Path(default if raw is None else raw).resolve())


def env_int(
    name: str,
    default: int,
    *,
    min_value: int | None = None,
    max_value: int | None = None,
    env: Env | None = None,
) -> int:
    raw = _raw(env, name)
    if raw is None:
        value = default
    else:
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer") from None
    _check_range(name, value, min_value, max_value)
    return _noted(env, name, value)


def env_float(
    name: str,
    default: float,
    *,
    min_value: float | None = None,
    max_value: float | None = None,
    env: Env | None = None,
) -> float:
    raw = _raw(env, name)
    if raw is None:
        value = default
    else:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ConfigError(f"{name}={raw!r} must be finite")
    _check_range(name, value, min_value, max_value)
    return _noted(env, name, value)


def env_bool(name: str, default: bool, env: Env | None = None) -> bool:
    raw = _raw(env, name)
    if raw is None:
        return _noted(env, name, default)
    if raw.lower() in _TRUE:
        return _noted(env, name, True)
    if raw.lower() in _FALSE:
        return _noted(env, name, False)
    raise ConfigError(f"{name}={raw!r} is not a boolean (use true/false, 1/0, yes/no, on/off)")


def env_choice(name: str, default: str, choices: tuple[str, ...], env: Env | None = None) -> str:
    value = env_str(name, default, env).lower()
    if value not in choices:
        raise ConfigError(f"{name}={value!r} must be one of {', '.join(choices)}")
    return _noted(env, name, value)


def _check_range(name: str, value: float, lo: float | None, hi: float | None) -> None:
    if lo is not None and value < lo:
        raise ConfigError(f"{name}={value} must be >= {lo}")
    if hi is not None and value > hi:
        raise ConfigError(f"{name}={value} must be <= {hi}")


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
    (TLS, API keys: services.common.security, off by default)."""

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
