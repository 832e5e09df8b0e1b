"""python -m services.feature: config -> bundle -> in-memory store -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.logging import setup_logging
from services.common.reload import ModelHolder, ReloadSettings, make_watcher
from services.common.server import run_main, serve_settings
from services.feature.config import SERVICE_NAME, FeatureConfig
from services.feature.servicer import register
from services.feature.store import InMemoryFeatureStore

log = logging.getLogger("services.feature")


async def main() -> None:
    config = FeatureConfig.from_env()
    setup_logging("feature", config.server.log_level, config.server.log_format)
    bundle = config.bundle.load()
    store = InMemoryFeatureStore.from_bundle(
        bundle, max_batch=config.max_events, max_ids=config.max_ids
    )
    log.info("bundle %s loaded from %s", bundle.version, bundle.root)
    # Hot reload: a new store per bundle, live per-user state carried over at the swap.
    holder = ModelHolder(store, bundle.version)
    watcher = make_watcher(
        config.bundle, ReloadSettings.from_env(), holder,
        lambda b: InMemoryFeatureStore.from_bundle(
            b, max_batch=config.max_events, max_ids=config.max_ids
        ),
        name="feature", expected_spec=bundle.feature_spec,
        adopt=lambda old, new: new.adopt_live_state(old),
    )  # fmt: skip
    try:
        await serve_settings(register(holder), config.server, SERVICE_NAME)
    finally:
        if watcher is not None:
            await watcher.stop()


if __name__ == "__main__":
    sys.exit(run_main("feature", main))
