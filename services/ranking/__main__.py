"""python -m services.ranking: config -> bundle -> ONNX ranker (CUDA or CPU) -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.bundle import Bundle
from services.common.errors import ConfigError
from services.common.logging import setup_logging
from services.common.onnx import CUDA
from services.common.reload import ModelHolder, ReloadSettings, make_watcher
from services.common.server import run_main, serve_settings
from services.ranking.batcher import RankBatcher, RankEngine
from services.ranking.config import SERVICE_NAME, RankingConfig
from services.ranking.ranker import OnnxRanker
from services.ranking.servicer import register

log = logging.getLogger("services.ranking")


async def main() -> None:
    config = RankingConfig.from_env()
    setup_logging("ranking", config.server.log_level, config.server.log_format)
    reload = ReloadSettings.from_env()
    bundle = config.bundle.load()
    engine = build_engine(config, bundle)
    log.info(
        "bundle %s loaded; ranking on %s; micro-batches of <= %d (max delay %.2f ms)",
        bundle.version, engine.ranker.provider, config.max_batch, config.max_delay_ms,
    )  # fmt: skip
    # The previous version stays loaded for the grace period: requests pinned to it are scored
    # by it; any other version is refused (FAILED_PRECONDITION; docs/bundle.md).
    holder = ModelHolder(engine, bundle.version, grace_s=reload.grace_s, on_retire=_close)

    def build(b: Bundle) -> RankEngine:
        return build_engine(config, b)

    watcher = make_watcher(
        config.bundle, reload, holder, build, name="ranking", expected_spec=bundle.feature_spec
    )
    try:
        await serve_settings(register(holder), config.server, SERVICE_NAME, model=holder)
    finally:
        if watcher is not None:
            await watcher.stop()
        await holder.current.close()


async def _close(engine: RankEngine) -> None:
    await engine.close()


def build_engine(config: RankingConfig, bundle: Bundle) -> RankEngine:
    """Ranker + batcher, warmed for every batch size (health says SERVING only when warm; a hot
    reload swaps in only a warm engine)."""
    ranker = OnnxRanker.from_bundle(
        bundle,
        prefer_gpu=config.prefer_gpu,
        intra_op_threads=config.intra_op_threads,
        max_candidates=config.max_candidates,
    )
    if config.device == "cuda" and ranker.provider != CUDA:
        raise ConfigError(f"RECSERVE_RANKING_DEVICE=cuda but onnxruntime gave {ranker.provider}")
    ranker.warm_up(config.max_batch)
    batcher = None
    if config.max_batch > 1:
        batcher = RankBatcher(
            ranker,
            max_batch=config.max_batch,
            max_delay_s=config.max_delay_ms / 1000.0,
            inline=config.inline_for(ranker.provider),
        )
    return RankEngine(ranker, batcher)


if __name__ == "__main__":
    sys.exit(run_main("ranking", main))
