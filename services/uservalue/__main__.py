"""python -m services.uservalue: config -> bundle -> user-value scorer -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.logging import setup_logging
from services.common.server import run_main, serve_settings
from services.uservalue.config import SERVICE_NAME, UserValueConfig
from services.uservalue.scorer import UserValueScorer
from services.uservalue.servicer import register

log = logging.getLogger("services.uservalue")


async def main() -> None:
    config = UserValueConfig.from_env()
    setup_logging("uservalue", config.server.log_level, config.server.log_format)
    bundle = config.bundle.load()
    scorer = UserValueScorer.from_bundle(bundle)
    log.info("bundle %s loaded; user-value model on %s", bundle.version, scorer.provider)
    servicer = register(scorer, bundle.version, config.max_users)
    await serve_settings(servicer, config.server, SERVICE_NAME)


if __name__ == "__main__":
    sys.exit(run_main("uservalue", main))
