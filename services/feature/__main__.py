"""python -m services.feature: config -> bundle -> store -> serve.

The store is in memory (default: snapshot + event log replay; feedback is acknowledged only once
it is in the event log, see docs/feedback.md; on SIGTERM the log is drained and a snapshot is
written before the process exits) or in Redis (RECSERVE_FEATURE_BACKEND=redis, several replicas;
Redis's append-only file is the durable log, see docs/feature_store.md)."""

from __future__ import annotations

import logging
import sys

from services.common.bundle import Bundle
from services.common.logging import setup_logging
from services.common.reload import ModelHolder, ReloadSettings, make_watcher
from services.common.server import run_main, serve_settings
from services.feature.config import SERVICE_NAME, FeatureConfig, StoreConfig
from services.feature.redis_store import RedisFeatureStore
from services.feature.servicer import register
from services.feature.snapshot import Durability, open_durable_store
from services.feature.store import FeatureStore, InMemoryFeatureStore

log = logging.getLogger("services.feature")


def build_store(
    config: FeatureConfig, store_config: StoreConfig, bundle: Bundle
) -> tuple[FeatureStore, Durability | None]:
    """The configured store, and the in-memory store's event log + snapshots (None for Redis)."""
    limits = {"max_batch": config.max_events, "max_ids": config.max_ids}
    if store_config.backend == "redis":
        store = RedisFeatureStore.connect(
            bundle,
            store_config.redis_url,
            prefix=store_config.redis_prefix,
            timeout_s=store_config.redis_timeout_s,
            require_durable=not store_config.redis_allow_non_durable,
            **limits,
        )
        return store, None
    return open_durable_store(bundle, config.durability, **limits)


async def main() -> None:
    config = FeatureConfig.from_env()
    store_config = StoreConfig.from_env()
    setup_logging("feature", config.server.log_level, config.server.log_format)
    bundle = config.bundle.load()
    store, durability = build_store(config, store_config, bundle)
    log.info("bundle %s loaded from %s", bundle.version, bundle.root)
    # Hot reload: a new store per bundle; the in-memory one takes over the live per-user state
    # at the swap, re-encoded by item id, with the event log and snapshots (adopt_live_state);
    # a Redis store reads the new version's keys (docs/feature_store.md, known gaps). The
    # previous store answers requests pinned to its version for the grace period.
    reload = ReloadSettings.from_env()
    holder = ModelHolder(store, bundle.version, grace_s=reload.grace_s)
    memory = store_config.backend == "memory"
    watcher = make_watcher(
        config.bundle, reload, holder,
        (lambda b: InMemoryFeatureStore.from_bundle(
            b, max_batch=config.max_events, max_ids=config.max_ids
        )) if memory else (lambda b: build_store(config, store_config, b)[0]),
        name="feature", expected_spec=bundle.feature_spec,
        adopt=(lambda old, new: new.adopt_live_state(old)) if memory else None,
    )  # fmt: skip
    try:
        await serve_settings(register(holder), config.server, SERVICE_NAME, model=holder)
    finally:
        if watcher is not None:
            await watcher.stop()
        if durability is not None:
            durability.close()


if __name__ == "__main__":
    sys.exit(run_main("feature", main))
