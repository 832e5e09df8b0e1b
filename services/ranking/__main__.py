"""python -m services.ranking: config -> bundle -> ONNX ranker (CUDA or CPU) -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.errors import ConfigError
from services.common.logging import setup_logging
from services.common.onnx import CUDA
from services.common.server import run_main, serve_settings
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
    log.info("bundle %s loaded; ranking on %s", bundle.version, ranker.provider)
    await serve_settings(register(ranker), config.server, SERVICE_NAME)


if __name__ == "__main__":
    sys.exit(run_main("ranking", main))
