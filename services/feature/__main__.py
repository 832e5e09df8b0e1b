"""python -m services.feature: config -> bundle -> snapshot + event log replay -> serve.

Feedback is acknowledged only once it is in the event log (see docs/feedback.md); on SIGTERM
the log is drained and a snapshot is written before the process exits."""

from __future__ import annotations

import logging
import sys

from services.common.logging import setup_logging
from services.common.server import run_main, serve_settings
from services.feature.config import SERVICE_NAME, FeatureConfig
from services.feature.servicer import register
from services.feature.snapshot import open_durable_store

log = logging.getLogger("services.feature")


async def main() -> None:
    config = FeatureConfig.from_env()
    setup_logging("feature", config.server.log_level, config.server.log_format)
    bundle = config.bundle.load()
    store, durability = open_durable_store(
        bundle, config.durability, max_batch=config.max_events, max_ids=config.max_ids
    )
    log.info("bundle %s loaded from %s", bundle.version, bundle.root)
    try:
        await serve_settings(register(store), config.server, SERVICE_NAME)
    finally:
        if durability is not None:
            durability.close()


if __name__ == "__main__":
    sys.exit(run_main("feature", main))
