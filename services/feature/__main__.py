"""python -m services.feature: config -> bundle -> store (memory or redis) -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.bundle import Bundle
from services.common.logging import setup_logging
from services.common.server import run_main, serve_settings
from services.feature.config import SERVICE_NAME, FeatureConfig, StoreConfig
from services.feature.redis_store import RedisFeatureStore
from services.feature.servicer import register
from services.feature.store import FeatureStore, InMemoryFeatureStore

log = logging.getLogger("services.feature")


def build_store(config: FeatureConfig, store_config: StoreConfig, bundle: Bundle) -> FeatureStore:
    limits = {"max_batch": config.max_events, "max_ids": config.max_ids}
    if store_config.backend == "redis":
        return RedisFeatureStore.connect(
            bundle,
            store_config.redis_url,
            prefix=store_config.redis_prefix,
            timeout_s=store_config.redis_timeout_s,
            require_durable=not store_config.redis_allow_non_durable,
            **limits,
        )
    return InMemoryFeatureStore.from_bundle(bundle, **limits)


async def main() -> None:
    config = FeatureConfig.from_env()
    store_config = StoreConfig.from_env()
    setup_logging("feature", config.server.log_level, config.server.log_format)
    bundle = config.bundle.load()
    store = build_store(config, store_config, bundle)
    log.info("bundle %s loaded from %s", bundle.version, bundle.root)
    await serve_settings(register(store), config.server, SERVICE_NAME)


if __name__ == "__main__":
    sys.exit(run_main("feature", main))
