"""python -m services.retrieval: config -> bundle -> user tower + FAISS index -> serve."""

from __future__ import annotations

import logging
import sys

from services.common.logging import setup_logging
from services.common.server import run_main, serve_settings
from services.retrieval.config import SERVICE_NAME, RetrievalConfig
from services.retrieval.retriever import Retriever
from services.retrieval.servicer import register

log = logging.getLogger("services.retrieval")


async def main() -> None:
    config = RetrievalConfig.from_env()
    setup_logging("retrieval", config.server.log_level, config.server.log_format)
    bundle = config.bundle.load()
    retriever = Retriever.from_bundle(
        bundle,
        intra_op_threads=config.intra_op_threads,
        max_k=config.max_k,
        tag_temperature=config.tag_temperature,
        exact_below=config.exact_below,
        faiss_threads=config.faiss_threads,
    )
    log.info(
        "bundle %s loaded: %d items, index %s, user tower on %s",
        bundle.version,
        retriever.index.index.ntotal,
        bundle.manifest.get("index_type", "?"),
        retriever.provider,
    )
    await serve_settings(register(retriever), config.server, SERVICE_NAME)


if __name__ == "__main__":
    sys.exit(run_main("retrieval", main))
