"""Gateway settings, read once from the environment; invalid values fail at start-up.

    RECSERVE_GATEWAY_PORT      50051
    RECSERVE_MODE              split (five processes) | embedded (stages in-process)
    RECSERVE_FEATURE_ADDR      127.0.0.1:50052      RECSERVE_FEATURE_DEADLINE_MS    200
    RECSERVE_RETRIEVAL_ADDR    127.0.0.1:50053      RECSERVE_RETRIEVAL_DEADLINE_MS  300
    RECSERVE_RANKING_ADDR      127.0.0.1:50054      RECSERVE_RANKING_DEADLINE_MS    300
    RECSERVE_USERVALUE_ADDR    127.0.0.1:50055      RECSERVE_USERVALUE_DEADLINE_MS  200
    RECSERVE_MAX_K             100    largest k a request may ask for
    RECSERVE_CANDIDATES        200    candidates retrieved and ranked per Recommend
    RECSERVE_MAX_BATCH         1000   most item ids / user ids / events in one request
    (a request over RECSERVE_MAX_K or RECSERVE_MAX_BATCH gets RESOURCE_EXHAUSTED: docs/limits.md)
    RECSERVE_RANKING_DEVICE    auto | cpu | cuda (embedded mode: where the ranker runs)
plus the shared server settings (RECSERVE_HOST, ...) and bundle location (RECSERVE_ARTIFACTS,
RECSERVE_BUNDLE_VERSION) from services.common.config.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.common.config import (
    BundleSettings,
    Env,
    ServerSettings,
    env_choice,
    env_int,
    env_str,
)
from services.common.errors import ConfigError

DEFAULT_PORT = 50051


@dataclass(frozen=True)
class Backend:
    """One stage's service: where it listens and how long the gateway waits for it."""

    name: str
    address: str
    deadline_s: float


@dataclass(frozen=True)
class Limits:
    """Per-request bounds the pipeline validates against."""

    max_k: int = 100
    candidates: int = 200
    max_batch: int = 1000


@dataclass(frozen=True)
class GatewaySettings:
    server: ServerSettings
    bundle: BundleSettings
    mode: str
    feature: Backend
    retrieval: Backend
    ranking: Backend
    uservalue: Backend
    limits: Limits
    prefer_gpu: bool

    @classmethod
    def from_env(cls, env: Env | None = None) -> GatewaySettings:
        return cls(
            server=ServerSettings.from_env("RECSERVE_GATEWAY_PORT", DEFAULT_PORT, env),
            bundle=BundleSettings.from_env(env),
            mode=env_choice("RECSERVE_MODE", "split", ("split", "embedded"), env),
            feature=_backend("feature", 50052, 200, env),
            retrieval=_backend("retrieval", 50053, 300, env),
            ranking=_backend("ranking", 50054, 300, env),
            uservalue=_backend("uservalue", 50055, 200, env),
            limits=Limits(
                max_k=env_int("RECSERVE_MAX_K", 100, min_value=1, max_value=10_000, env=env),
                candidates=env_int(
                    "RECSERVE_CANDIDATES", 200, min_value=1, max_value=100_000, env=env
                ),
                max_batch=env_int(
                    "RECSERVE_MAX_BATCH", 1000, min_value=1, max_value=1_000_000, env=env
                ),
            ),
            prefer_gpu=env_choice("RECSERVE_RANKING_DEVICE", "auto", ("auto", "cpu", "cuda"), env)
            != "cpu",
        )

    @property
    def backends(self) -> tuple[Backend, ...]:
        return (self.feature, self.retrieval, self.ranking, self.uservalue)


def _backend(name: str, default_port: int, default_ms: int, env: Env | None) -> Backend:
    upper = name.upper()
    address = env_str(f"RECSERVE_{upper}_ADDR", f"127.0.0.1:{default_port}", env)
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"RECSERVE_{upper}_ADDR={address!r} must be HOST:PORT")
    deadline_ms = env_int(
        f"RECSERVE_{upper}_DEADLINE_MS", default_ms, min_value=1, max_value=60_000, env=env
    )
    return Backend(name=name, address=address, deadline_s=deadline_ms / 1000.0)
