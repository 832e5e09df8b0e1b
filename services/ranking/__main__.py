"""python -m services.ranking: config -> bundle -> ONNX ranker (CUDA or CPU) -> serve
(the life cycle: services.platform.service)."""

from __future__ import annotations

import sys

from services.platform.service import Service, run_service
from services.ranking.batcher import RankEngine
from services.ranking.config import SERVICE_NAME, RankingConfig
from services.ranking.served import RankingModel
from services.ranking.servicer import register


def configure() -> Service[RankEngine]:
    config = RankingConfig.from_env()
    model = RankingModel(config)
    return Service(
        config.server, config.bundle, model, SERVICE_NAME,
        register=register,
        background=model.item_sync,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_service("ranking", configure))
