"""Typed, validated environment variable readers (the lowest settings layer: it knows only
env_names and errors, so every platform module (metrics, tracing, interceptors, security,
config) can read its settings without importing the others).

Every reader raises ConfigError with the variable's name and the reason, so a service can fail
at start-up with one clear line (see services.platform.server.run_main). Reading the process
environment (env=None) also records the value, default included, for the effective-configuration
line each service logs at start-up (services.platform.env_names).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TypeVar

from services.contract.errors import ConfigError
from services.platform import env_names

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
