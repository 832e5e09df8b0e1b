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
Split mode, how each backend call is protected (services.gateway.resilience):
    RECSERVE_GATEWAY_RETRY_ATTEMPTS          3      tries per call, the first included (1..10)
    RECSERVE_GATEWAY_RETRY_BACKOFF_MS        10     backoff base: retry n sleeps U(0, min(max,
    RECSERVE_GATEWAY_RETRY_BACKOFF_MAX_MS    100    base * 2^n)), never past the stage deadline
    RECSERVE_GATEWAY_BREAKER_FAILURES        5      consecutive failures that open a breaker
    RECSERVE_GATEWAY_BREAKER_FAILURE_RATIO   0.5    ... or this failure ratio over the window
    RECSERVE_GATEWAY_BREAKER_WINDOW_S        10     sliding window of the ratio
    RECSERVE_GATEWAY_BREAKER_MIN_CALLS       20     calls in the window before the ratio counts
    RECSERVE_GATEWAY_BREAKER_COOLDOWN_MS     1000   open (failing fast) this long, then half-open
    RECSERVE_GATEWAY_BREAKER_PROBES          2      half-open trial calls; that many successes close
    RECSERVE_GATEWAY_FEEDBACK_SPOOL          0      feedback events held in gateway memory while
                                                    the feature service is unreachable; off by
                                                    default: held events are acknowledged but
                                                    not yet durable (lost if the gateway dies)
    RECSERVE_GATEWAY_RECOMMEND_BUDGET_MS     0      a Recommend's stage calls end within this
                                                    (each stage: min(own deadline, what is left);
                                                    0 = off): set it below the clients' deadline
    RECSERVE_ITEM_SYNC_S                     5      seconds between pulls of the registry of
                                                    added items (docs/new_items.md; 0 = off)
    RECSERVE_METRICS_PORT                    0      Prometheus /metrics port (0 = off)
plus the shared server settings (RECSERVE_HOST, ...) and bundle location (RECSERVE_ARTIFACTS,
RECSERVE_BUNDLE_VERSION) from services.platform.config.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from services.contract.errors import ConfigError
from services.gateway.resilience import BreakerSettings, RetryPolicy
from services.platform.config import (
    BundleSettings,
    Env,
    ServerSettings,
    env_choice,
    env_float,
    env_int,
    env_str,
)
from services.platform.item_sync import sync_interval_from_env
from services.platform.metrics import MetricsSettings

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
    feedback_spool: int = 0  # feedback events held while the feature service is unreachable
    recommend_budget_s: float | None = None  # all of Recommend's stage calls; None = no cap


@dataclass(frozen=True)
class Resilience:
    """How the gateway calls its backends in split mode: retries and circuit breakers."""

    retry: RetryPolicy = field(default_factory=RetryPolicy)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)

    @classmethod
    def from_env(cls, env: Env | None = None) -> Resilience:
        p = "RECSERVE_GATEWAY_"
        base_ms = env_int(f"{p}RETRY_BACKOFF_MS", 10, min_value=0, max_value=10_000, env=env)
        max_ms = env_int(
            f"{p}RETRY_BACKOFF_MAX_MS", 100, min_value=base_ms, max_value=60_000, env=env
        )
        return cls(
            retry=RetryPolicy(
                attempts=env_int(f"{p}RETRY_ATTEMPTS", 3, min_value=1, max_value=10, env=env),
                base_s=base_ms / 1000.0,
                max_s=max_ms / 1000.0,
            ),
            breaker=BreakerSettings(
                failures=env_int(f"{p}BREAKER_FAILURES", 5, min_value=1, max_value=10_000, env=env),
                failure_ratio=env_float(
                    f"{p}BREAKER_FAILURE_RATIO", 0.5, min_value=0.01, max_value=1.0, env=env
                ),
                window_s=env_float(
                    f"{p}BREAKER_WINDOW_S", 10.0, min_value=0.1, max_value=3600.0, env=env
                ),
                min_calls=env_int(
                    f"{p}BREAKER_MIN_CALLS", 20, min_value=1, max_value=1_000_000, env=env
                ),
                cooldown_s=env_int(
                    f"{p}BREAKER_COOLDOWN_MS", 1000, min_value=0, max_value=600_000, env=env
                )
                / 1000.0,
                probes=env_int(f"{p}BREAKER_PROBES", 2, min_value=1, max_value=1000, env=env),
            ),
        )


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
    resilience: Resilience = field(default_factory=Resilience)
    metrics: MetricsSettings = field(default_factory=lambda: MetricsSettings("127.0.0.1", 0))
    # Seconds between pulls of the registry of added items (services.platform.item_sync; split:
    # from the feature service, embedded: from the in-process store); 0 = off.
    item_sync_s: float = 5.0

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
                feedback_spool=env_int(
                    "RECSERVE_GATEWAY_FEEDBACK_SPOOL", 0, min_value=0, max_value=10**7, env=env
                ),
                recommend_budget_s=_budget(env),
            ),
            prefer_gpu=env_choice("RECSERVE_RANKING_DEVICE", "auto", ("auto", "cpu", "cuda"), env)
            != "cpu",
            resilience=Resilience.from_env(env),
            metrics=MetricsSettings.for_service("gateway", env),
            item_sync_s=sync_interval_from_env(env),
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


def _budget(env: Env | None) -> float | None:
    ms = env_int("RECSERVE_GATEWAY_RECOMMEND_BUDGET_MS", 0, min_value=0, max_value=600_000, env=env)
    return ms / 1000.0 if ms else None
