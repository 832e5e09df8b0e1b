"""python -m services.retrieval: config -> bundle -> user tower + FAISS index -> serve."""

from __future__ import annotations

import logging
import sys

import numpy as np

from services.common.added_items import AddedItem
from services.common.item_sync import ItemSync, grpc_list_fn
from services.common.logging import setup_logging
from services.common.reload import ModelHolder, ReloadSettings, make_watcher
from services.common.security import aio_channel
from services.common.server import run_main, serve_settings
from services.common.types import UserState
from services.retrieval.config import SERVICE_NAME, RetrievalConfig
from services.retrieval.retriever import Retriever
from services.retrieval.servicer import register
from services.retrieval.sync import apply_registry

log = logging.getLogger("services.retrieval")


def start_sync(config: RetrievalConfig, holder: ModelHolder[Retriever]) -> ItemSync | None:
    """Index items added at runtime that this process has not been sent (restarts, other
    replicas' calls): pulled from the feature service's registry (RECSERVE_FEATURE_ADDR)."""
    if config.feature_addr is None or config.item_sync_s <= 0:
        log.info("item sync off (RECSERVE_FEATURE_ADDR unset or RECSERVE_ITEM_SYNC_S=0)")
        return None
    security = config.server.security
    channel = aio_channel(
        config.feature_addr,
        tls=security.client_tls,
        api_key=security.outgoing_key,
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )

    async def apply(entries: list[AddedItem]) -> None:
        await apply_registry(holder.current, entries)

    sync = ItemSync(
        grpc_list_fn(channel),
        apply,
        interval_s=config.item_sync_s,
        name="retrieval",
        close=channel.close,
    )
    sync.start()
    return sync


async def main() -> None:
    config = RetrievalConfig.from_env()
    setup_logging("retrieval", config.server.log_level, config.server.log_format)
    bundle = config.bundle.load()

    def build(b):
        return Retriever.from_bundle(
            b,
            intra_op_threads=config.intra_op_threads,
            max_k=config.max_k,
            tag_temperature=config.tag_temperature,
            exact_below=config.exact_below,
            faiss_threads=config.faiss_threads,
        )

    retriever = build(bundle)
    index_info = bundle.manifest.get("index", {})
    log.info(
        "bundle %s loaded: %d items, index %s (nprobe %s, recall@100 %s at build), "
        "user tower on %s",
        bundle.version,
        retriever.index.index.ntotal,
        bundle.manifest.get("index_type", "?"),
        index_info.get("nprobe", "-"),
        index_info.get("recall", "-"),
        retriever.provider,
    )
    reload = ReloadSettings.from_env()
    holder = ModelHolder(retriever, bundle.version, grace_s=reload.grace_s)

    def build_and_warm(b):
        new = build(b)
        spec = b.feature_spec
        cold = UserState(
            "warm-up", False, 0,
            np.zeros(len(spec.profile_fields), np.int64), np.zeros(spec.history_len, np.int64),
        )  # fmt: skip
        new.retrieve(cold, min(10, new.max_k))  # ORT's lazy set-up happens here, not on a request
        return new

    sync = start_sync(config, holder)

    def adopt(old: Retriever, new: Retriever) -> None:
        new.adopt_added(old)  # items added at runtime: re-encoded, re-rowed for the new bundle
        new.adopt_availability(old)
        if sync is not None:
            sync.resync()  # rows as the registry orders them; entries pulled meanwhile

    watcher = make_watcher(
        config.bundle, reload, holder, build_and_warm,
        name="retrieval", expected_spec=bundle.feature_spec,
        adopt=adopt,
    )  # fmt: skip
    try:
        await serve_settings(register(holder), config.server, SERVICE_NAME, model=holder)
    finally:
        if watcher is not None:
            await watcher.stop()
        if sync is not None:
            await sync.stop()


if __name__ == "__main__":
    sys.exit(run_main("retrieval", main))
