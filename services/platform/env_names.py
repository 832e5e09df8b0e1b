"""Every RECSERVE_* environment variable recserve reads, the start-up check against that list,
and the record of what this process read (its effective configuration, secrets masked).

A RECSERVE_* name not listed here is a typo or a setting that no longer exists: a service
refuses to start with it (`unknown setting RECSERVE_FEEDBACK_LOG_DIR; did you mean
RECSERVE_FEATURE_LOG_DIR?`) instead of silently using a default. New settings are added here
(tests/services/test_env_names.py fails when the code reads a name this list lacks).
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping

from services.contract.errors import ConfigError

PREFIX = "RECSERVE_"
SERVICES = ("gateway", "feature", "retrieval", "ranking", "uservalue")

# Read by the services (services/), the shared plumbing (services/platform/) and the launcher.
_SERVING = """
    HOST GRACE_SECONDS MAX_MESSAGE_BYTES REUSE_PORT LOG_LEVEL LOG_FORMAT ACCESS_LOG_SAMPLE
    EVENT_LOOP GRPC_IO
    ARTIFACTS BUNDLE_VERSION RELOAD_INTERVAL_S RELOAD_GRACE_S ITEM_SYNC_S
    METRICS_PORT METRICS_HOST TRACING TRACE_SAMPLE
    TLS_CERT TLS_KEY TLS_CLIENT_CA TLS_CA TLS_CLIENT_CERT TLS_CLIENT_KEY TLS_SERVER_NAME
    API_KEYS API_KEYS_FILE INTERNAL_API_KEYS INTERNAL_API_KEYS_FILE
    INTERNAL_API_KEY INTERNAL_API_KEY_FILE
    MODE MAX_K CANDIDATES MAX_BATCH EXPERIMENTS_FILE EXPOSURE_LOG
    GATEWAY_RETRY_ATTEMPTS GATEWAY_RETRY_BACKOFF_MS GATEWAY_RETRY_BACKOFF_MAX_MS
    GATEWAY_BREAKER_FAILURES GATEWAY_BREAKER_FAILURE_RATIO GATEWAY_BREAKER_WINDOW_S
    GATEWAY_BREAKER_MIN_CALLS GATEWAY_BREAKER_COOLDOWN_MS GATEWAY_BREAKER_PROBES
    GATEWAY_FEEDBACK_SPOOL GATEWAY_RECOMMEND_BUDGET_MS
    FEATURE_MAX_IDS FEATURE_MAX_EVENTS FEATURE_BACKEND FEATURE_LOG_DIR FEATURE_FSYNC
    FEATURE_GROUP_DELAY_MS FEATURE_GROUP_MAX_RECORDS FEATURE_SEGMENT_MB
    FEATURE_SNAPSHOT_EVERY FEATURE_KEEP_SEGMENTS
    REDIS_URL REDIS_PREFIX REDIS_TIMEOUT_SECONDS REDIS_ALLOW_NON_DURABLE
    RETRIEVAL_MAX_K RETRIEVAL_THREADS RETRIEVAL_EXACT_BELOW TAG_TEMPERATURE FAISS_THREADS
    RANKING_DEVICE RANKING_MAX_CANDIDATES RANKING_THREADS RANKING_MAX_BATCH
    RANKING_MAX_DELAY_MS RANKING_EXECUTOR
    USERVALUE_MAX_USERS USERVALUE_CACHE_USERS
"""
# Read by the CLI, training, the tests and the image's HEALTHCHECK (PORT, docker/Dockerfile):
# never by a service, but set in the same shells and containers.
_TOOLS = "TARGET API_KEY DATA_DIR DDP_BACKEND FUZZ_EXAMPLES REQUIRE_REDIS PORT TORCH_THREADS"
_PER_SERVICE = ("PORT", "METRICS_PORT")  # RECSERVE_<SERVICE>_PORT, ..._METRICS_PORT
_PER_BACKEND = ("ADDR", "DEADLINE_MS")  # RECSERVE_<BACKEND>_ADDR, ..._DEADLINE_MS

KNOWN: frozenset[str] = frozenset(
    [PREFIX + name for name in (_SERVING + _TOOLS).split()]
    + [f"{PREFIX}{s.upper()}_{v}" for s in SERVICES for v in _PER_SERVICE]
    + [f"{PREFIX}{s.upper()}_{v}" for s in SERVICES if s != "gateway" for v in _PER_BACKEND]
)


def unknown_settings(env: Mapping[str, str] | None = None) -> list[str]:
    """RECSERVE_* names in `env` (default: os.environ) that recserve does not read, sorted."""
    names = os.environ if env is None else env
    return sorted(n for n in names if n.startswith(PREFIX) and n not in KNOWN)


def check_environment(env: Mapping[str, str] | None = None) -> None:
    """ConfigError naming every unknown RECSERVE_* variable, each with a did-you-mean."""
    unknown = unknown_settings(env)
    if not unknown:
        return
    parts = []
    for name in unknown:
        close = difflib.get_close_matches(name, KNOWN, n=1, cutoff=0.6)
        parts.append(f"{name} (did you mean {close[0]}?)" if close else name)
    raise ConfigError(
        f"unknown setting{'s' if len(parts) > 1 else ''}: {'; '.join(parts)}; "
        "recserve reads only the RECSERVE_* variables listed in docs/operations.md"
    )


# --- the effective configuration of this process ------------------------------------------
_READ: dict[str, str] = {}
_URL_PASSWORD = re.compile(r"(://[^:/@]*:)[^@]*@")


def mask(name: str, value: str) -> str:
    """The value as it may be printed: API keys hidden, a URL's password hidden (key *paths*
    are shown; their contents never are)."""
    if "API_KEY" in name and not name.endswith("_FILE"):
        return "***" if value else ""
    return _URL_PASSWORD.sub(r"\1***@", value)


def record(name: str, value: object) -> None:
    """Note what this process read for `name` (called by the services.platform.env readers
    when they read the process environment)."""
    _READ[name] = mask(name, str(value))


def effective() -> dict[str, str]:
    """{name: value} of every setting this process has read so far (defaults included)."""
    return dict(sorted(_READ.items()))


def describe() -> str:
    """The effective configuration on one line: `NAME=value NAME=value ...`."""
    return " ".join(f"{name}={value}" for name, value in effective().items())
