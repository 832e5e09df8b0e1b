"""python -m services.gateway: config -> bundle -> pipeline (split or embedded) -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.logging import setup_logging
from services.common.metrics import start_metrics_http
from services.common.server import run_main, serve
from services.gateway.app import build_pipeline, start_gateway
from services.gateway.config import GatewaySettings

log = logging.getLogger("services.gateway")


async def main() -> None:
    settings = GatewaySettings.from_env()
    setup_logging("gateway", settings.server.log_level, settings.server.log_format)
    bundle = settings.bundle.load()
    pipeline = build_pipeline(settings, bundle)
    log.info(
        "bundle %s loaded from %s; mode=%s backends=%s",
        bundle.version,
        bundle.root,
        settings.mode,
        "in-process" if settings.mode == "embedded" else [b.address for b in settings.backends],
    )
    start_metrics_http(settings.metrics.port, settings.metrics.host)
    server, _ = await start_gateway(settings, pipeline)
    try:
        await serve(server, grace=settings.server.grace_s)
    finally:
        await pipeline.close()


if __name__ == "__main__":
    sys.exit(run_main("gateway", main))
