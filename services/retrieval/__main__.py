"""python -m services.retrieval: config -> bundle -> user tower + FAISS index -> serve (the life
cycle: services.platform.service; the model and its item sync: services.retrieval.served)."""

from __future__ import annotations

import sys

from services.platform.service import Service, run_service
from services.retrieval.config import SERVICE_NAME, RetrievalConfig
from services.retrieval.retriever import Retriever
from services.retrieval.served import RetrievalModel
from services.retrieval.servicer import register


def configure() -> Service[Retriever]:
    config = RetrievalConfig.from_env()
    model = RetrievalModel(config)
    return Service(
        config.server, config.bundle, model, SERVICE_NAME,
        register=register,
        background=model.item_sync,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_service("retrieval", configure))
