"""Prometheus metrics of one recserve process, and the HTTP endpoint that exposes them.

Every metric lives in this module's own CollectorRegistry (`REGISTRY`), so a process exports
only recserve's series plus the standard process_* ones (no GC or platform collectors, no clash
with a library that uses prometheus_client's global registry). Code that counts something
imports the metric from here; names follow the Prometheus conventions (`_total`, base units).

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
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

from services.contract.errors import ConfigError
from services.platform.env import Env, env_int, env_str

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)  # process_resident_memory_bytes, open fds, CPU seconds

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
ADDED_ITEMS_KNOWN = Gauge(
    "recserve_added_items_known",
    "Items added at runtime that this process's item sync has pulled from the registry.",
    ("service",),
    registry=REGISTRY,
)
UNKNOWN_ITEM_ROWS = Counter(
    "recserve_unknown_item_rows_total",
    "Item rows a model read as row 0 (the unknown item) because this process does not hold "
    "them: an added item its item sync has not brought yet, or any added item under a "
    "schema_version 1 bundle.",
    ("service",),
    registry=REGISTRY,
)
ITEM_SYNC_FAILURES = Counter(
    "recserve_item_sync_failures_total",
    "Item sync rounds that failed (registry unreachable, or applying the items failed).",
    ("service",),
    registry=REGISTRY,
)
VERSION_RETRIES = Counter(
    "recserve_version_retries_total",
    "Gateway requests rerun whole on another bundle version because a backend refused the "
    "request's version (one version per request, docs/bundle.md).",
    registry=REGISTRY,
)
CIRCUIT_OPENED = Counter(
    "recserve_circuit_opened_total",
    "Times a backend's circuit breaker opened.",
    ("backend",),
    registry=REGISTRY,
)


# --- every service: RPCs (services.platform.interceptors) and the loaded model ---------------
_LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.004, 0.008, 0.015, 0.03, 0.06, 0.12, 0.25, 0.5, 1, 2.5)
RPC_REQUESTS = Counter(
    "recserve_rpc_requests_total",
    "Unary RPCs served, by gRPC service, method and status code.",
    ("service", "method", "code"),
    registry=REGISTRY,
)
RPC_LATENCY = Histogram(
    "recserve_rpc_latency_seconds",
    "Server-side latency of unary RPCs, by gRPC service and method.",
    ("service", "method"),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
# --- gateway: time spent in each stage of the pipeline --------------------------------------
STAGE_LATENCY = Histogram(
    "recserve_stage_latency_seconds",
    "Gateway time per pipeline stage call (features, retrieval, ranking, uservalue).",
    ("stage",),
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)
# --- ranking: dynamic batching ------------------------------------------------------------
RANKING_BATCH_SIZE = Histogram(
    "recserve_ranking_batch_size",
    "Rank requests merged into one ONNX Runtime call.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
USER_TOWER_BATCH_SIZE = Histogram(
    "recserve_user_tower_batch_size",
    "Requests whose user embeddings one user-tower call computed (retrieval service, embedded "
    "gateway).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128),
    registry=REGISTRY,
)
RANKING_QUEUE_DELAY = Histogram(
    "recserve_ranking_queue_delay_seconds",
    "Time a Rank request waited in the batching queue before its ONNX Runtime call started.",
    buckets=_LATENCY_BUCKETS,
    registry=REGISTRY,
)


class _ModelInfo:
    """recserve_model_info{service, version, provider} = 1, read from each registered model
    holder at scrape time (so a hot reload shows up without anyone updating a gauge)."""

    def __init__(self) -> None:
        self.sources: dict[str, Callable[[], tuple[str, str]]] = {}

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "recserve_model_info",
            "1 for the bundle version (and ONNX Runtime provider, where a model runs) served.",
            labels=("service", "version", "provider"),
        )
        for service, source in sorted(self.sources.items()):
            version, provider = source()
            family.add_metric([service, version, provider], 1.0)
        yield family


_MODEL_INFO = _ModelInfo()
REGISTRY.register(_MODEL_INFO)


def watch_model(service: str, holder: Any) -> None:
    """Report `holder`'s bundle version (ModelHolder.version or .bundle_version) and, when the
    model has one, its execution provider (.provider, or .ranker.provider)."""

    def source() -> tuple[str, str]:
        version = getattr(holder, "version", None) or getattr(holder, "bundle_version", "")
        model = getattr(holder, "current", holder)
        provider = getattr(model, "provider", None) or getattr(
            getattr(model, "ranker", None), "provider", ""
        )
        return str(version), str(provider or "")

    _MODEL_INFO.sources[service] = source


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

    @classmethod
    def for_service(cls, service: str, env: Env | None = None) -> MetricsSettings:
        """RECSERVE_<SERVICE>_METRICS_PORT, else RECSERVE_METRICS_PORT (one host, several
        services: give each its own port; in Kubernetes every pod can use the same one)."""
        shared = cls.from_env(env)
        return cls(
            host=shared.host,
            port=env_int(
                f"RECSERVE_{service.upper()}_METRICS_PORT",
                shared.port,
                min_value=0,
                max_value=65535,
                env=env,
            ),
        )


def start_metrics_http(
    port: int, host: str = "127.0.0.1", registry: CollectorRegistry = REGISTRY
) -> WSGIServer | None:
    """Serve `registry` at http://host:port/metrics in a daemon thread; port 0 = off (None).

    -> the server (call .shutdown() to stop it; tests do); its bound port is
    server.server_port."""
    if port == 0:
        return None
    try:
        server, _thread = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        raise ConfigError(f"metrics endpoint {host}:{port}: {exc.strerror or exc}") from None
    log.info("metrics on http://%s:%d/metrics", host, server.server_port)
    return server


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    """Current value of one series in REGISTRY (0.0 when it was never touched): for tests and
    reports, e.g. sample("recserve_fallbacks_total", {"stage": "ranking", "reason": ...})."""
    value = REGISTRY.get_sample_value(name, labels or {})
    return 0.0 if value is None else float(value)
