"""python -m services.feature: config -> bundle -> in-memory store -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.logging import setup_logging
from services.common.server import create_server, run_main, serve
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
    server, _port = await create_server(
        register(store),
        host=config.server.host,
        port=config.server.port,
        service_names=[SERVICE_NAME],
        max_message_bytes=config.server.max_message_bytes,
        reuse_port=config.server.reuse_port,
    )
    await serve(server, grace=config.server.grace_s)


if __name__ == "__main__":
    sys.exit(run_main("feature", main))
