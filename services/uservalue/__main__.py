"""python -m services.uservalue: config -> bundle -> user-value scorer -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.logging import setup_logging
from services.common.server import create_server, run_main, serve
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
    server, _port = await create_server(
        register(scorer, bundle.version, config.max_users),
        host=config.server.host,
        port=config.server.port,
        service_names=[SERVICE_NAME],
        max_message_bytes=config.server.max_message_bytes,
        reuse_port=config.server.reuse_port,
    )
    await serve(server, grace=config.server.grace_s)


if __name__ == "__main__":
    sys.exit(run_main("uservalue", main))
