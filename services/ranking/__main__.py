"""python -m services.ranking: config -> bundle -> ONNX ranker (CUDA or CPU) -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.errors import ConfigError
from services.common.logging import setup_logging
from services.common.onnx import CUDA
from services.common.server import run_main, serve_settings
from services.ranking.batcher import RankBatcher
from services.ranking.config import SERVICE_NAME, RankingConfig
from services.ranking.ranker import OnnxRanker
from services.ranking.servicer import register

log = logging.getLogger("services.ranking")


async def main() -> None:
    config = RankingConfig.from_env()
    setup_logging("ranking", config.server.log_level, config.server.log_format)
    bundle = config.bundle.load()
    ranker = OnnxRanker.from_bundle(
        bundle,
        prefer_gpu=config.prefer_gpu,
        intra_op_threads=config.intra_op_threads,
        max_candidates=config.max_candidates,
    )
    if config.device == "cuda" and ranker.provider != CUDA:
        raise ConfigError(f"RECSERVE_RANKING_DEVICE=cuda but onnxruntime gave {ranker.provider}")
    # Warm every batch size before the server exists, so health says SERVING only when warm.
    ranker.warm_up(config.max_batch)
    batcher = None
    if config.max_batch > 1:
        batcher = RankBatcher(
            ranker, max_batch=config.max_batch, max_delay_s=config.max_delay_ms / 1000.0
        )
    log.info(
        "bundle %s loaded; ranking on %s; micro-batches of <= %d (max delay %.2f ms)",
        bundle.version, ranker.provider, config.max_batch, config.max_delay_ms,
    )  # fmt: skip
    try:
        await serve_settings(register(ranker, batcher), config.server, SERVICE_NAME)
    finally:
        if batcher is not None:
            await batcher.close()


if __name__ == "__main__":
    sys.exit(run_main("ranking", main))
