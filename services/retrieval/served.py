"""The retrieval service's served model (services.platform.service): the user tower + FAISS index
per bundle, and the item sync that indexes items added at runtime."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator

import numpy as np

from services.contract.added_items import AddedItem
from services.contract.bundle import Bundle
from services.contract.types import UserState
from services.platform.item_sync import ItemSync, start_grpc_sync
from services.platform.reload import ModelHolder
from services.platform.service import ServedModel
from services.retrieval.config import RetrievalConfig
from services.retrieval.retriever import Retriever
from services.retrieval.sync import apply_registry

log = logging.getLogger("services.retrieval")


def start_sync(config: RetrievalConfig, holder: ModelHolder[Retriever]) -> ItemSync | None:
    """Index items added at runtime that this process has not been sent (restarts, other
    replicas' calls): pulled from the feature service's registry (RECSERVE_FEATURE_ADDR)."""

    async def apply(entries: list[AddedItem]) -> None:
        await apply_registry(holder.current, entries)

    return start_grpc_sync(
        config.feature_addr, config.item_sync_s, config.server.security, apply, name="retrieval"
    )


class RetrievalModel(ServedModel[Retriever]):
    def __init__(self, config: RetrievalConfig) -> None:
        self.config = config
        self.sync: ItemSync | None = None

    def from_bundle(self, bundle: Bundle) -> Retriever:
        config = self.config
        return Retriever.from_bundle(
            bundle,
            intra_op_threads=config.intra_op_threads,
            max_k=config.max_k,
            tag_temperature=config.tag_temperature,
            exact_below=config.exact_below,
            faiss_threads=config.faiss_threads,
        )

    def warm_up(self, model: Retriever, bundle: Bundle) -> None:
        spec = bundle.feature_spec
        cold = UserState(
            "warm-up", False, 0,
            np.zeros(len(spec.profile_fields), np.int64), np.zeros(spec.history_len, np.int64),
        )  # fmt: skip
        model.retrieve(cold, min(10, model.max_k))  # ORT's lazy set-up, not on a request

    def adopt(self, old: Retriever, new: Retriever) -> None:
        new.adopt_added(old)  # items added at runtime: re-encoded, re-rowed for the new bundle
        new.adopt_availability(old)
        if self.sync is not None:
            self.sync.resync()  # rows as the registry orders them; entries pulled meanwhile

    def describe(self, model: Retriever, bundle: Bundle) -> str:
        index = bundle.manifest.get("index", {})
        return (
            f"{model.index.index.ntotal} items, index {bundle.manifest.get('index_type', '?')} "
            f"(nprobe {index.get('nprobe', '-')}, recall@100 {index.get('recall', '-')} at build), "
            f"user tower on {model.provider}"
        )

    @contextlib.asynccontextmanager
    async def item_sync(self, holder: ModelHolder[Retriever]) -> AsyncIterator[None]:
        """Service.background: the item sync, from the holder's creation to after the watcher."""
        self.sync = start_sync(self.config, holder)
        try:
            yield
        finally:
            if self.sync is not None:
                await self.sync.stop()
