"""python -m services.gateway: config -> bundle -> pipeline (split or embedded) -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.logging import setup_logging
from services.common.metrics import start_metrics_http, watch_model
from services.common.reload import ModelHolder, ReloadSettings
from services.common.server import run_main, serve
from services.gateway.app import (
    build_pipeline,
    start_gateway,
    start_item_sync,
    start_reloading,
)
from services.gateway.config import GatewaySettings
from services.gateway.experiments import runner_from_env

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
    reload = ReloadSettings.from_env()
    holder = ModelHolder(pipeline, bundle.version, grace_s=reload.grace_s)
    watch_model("gateway", holder)
    experiments = runner_from_env()  # RECSERVE_EXPERIMENTS_FILE: A/B arms + exposure log
    server, _ = await start_gateway(settings, holder, experiments=experiments)
    sync = start_item_sync(settings, holder)  # items added through other replicas
    watcher = start_reloading(settings, holder, reload, sync)
    try:
        await serve(server, grace=settings.server.grace_s)
    finally:
        if watcher is not None:
            await watcher.stop()
        if sync is not None:
            await sync.stop()
        await holder.current.close()  # its feedback spool, then the stages (shared in split)
        if experiments is not None:
            experiments.close()


if __name__ == "__main__":
    sys.exit(run_main("gateway", main))
