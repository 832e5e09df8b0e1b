"""Prometheus metrics of one recserve process, and the HTTP endpoint that exposes them.

Every metric lives in this module's own CollectorRegistry (`REGISTRY`), so a process exports
only recserve's series (no default process/GC collectors mixed in, no clash with a library that
uses prometheus_client's global registry). Code that counts something imports the metric from
here; names follow the Prometheus conventions (`_total` counters, base units).

    RECSERVE_METRICS_PORT   0 (off) | 1..65535: serve /metrics over HTTP on that port
    RECSERVE_METRICS_HOST   127.0.0.1

Labels:
    stage     a pipeline stage as the response's `fallbacks` name it: features, retrieval,
              ranking, uservalue (and feedback for the gateway's feedback spool)
    backend   a backend service: feature, retrieval, ranking, uservalue
    code      a gRPC status name, e.g. UNAVAILABLE, DEADLINE_EXCEEDED
    reason    why a fallback was taken: unavailable, deadline_exceeded, circuit_open, ...
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from services.common.config import Env, env_int, env_str

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

FALLBACKS = Counter(
    "recserve_fallbacks_total",
    "Answers degraded because a stage failed, by stage and reason.",
    ("stage", "reason"),
    registry=REGISTRY,
)
STAGE_ERRORS = Counter(
    "recserve_stage_errors_total",
    "Failed calls (each attempt) to a backend stage, by stage and gRPC status.",
    ("stage", "code"),
    registry=REGISTRY,
)
RETRIES = Counter(
    "recserve_retries_total",
    "Calls to a backend that were retried after a retryable failure.",
    ("backend",),
    registry=REGISTRY,
)
CIRCUIT_STATE = Gauge(
    "recserve_circuit_state",
    "Circuit breaker state per backend: 0 closed, 1 half-open, 2 open.",
    ("backend",),
    registry=REGISTRY,
)
CIRCUIT_OPENED = Counter(
    "recserve_circuit_opened_total",
    "Times a backend's circuit breaker opened.",
    ("backend",),
    registry=REGISTRY,
)


@dataclass(frozen=True)
class MetricsSettings:
    host: str
    port: int  # 0 = off

    @classmethod
    def from_env(cls, env: Env | None = None) -> MetricsSettings:
        return cls(
            host=env_str("RECSERVE_METRICS_HOST", "127.0.0.1", env),
            port=env_int("RECSERVE_METRICS_PORT", 0, min_value=0, max_value=65535, env=env),
        )


def start_metrics_http(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY
) -> WSGIServer | None:
    """Serve `registry` at http://host:port/metrics in a daemon thread; port 0 = off (None).

    -> the server (call .shutdown() to stop it; tests do); its bound port is
    server.server_port."""
    if port == 0:
        return None
    server, _thread = start_http_server(port, addr=host, registry=registry)
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return server


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """Current value of one series in REGISTRY (0.0 when it was never touched): for tests and
    reports, e.g. sample("recserve_fallbacks_total", {"stage": "ranking", "reason": ...})."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)
