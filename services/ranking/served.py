"""The ranking service's served model (services.platform.service): an ONNX ranker and its
micro-batcher per bundle, CUDA or CPU, and the item sync that puts items added at runtime into
the ranker's item table (services.ranking.added), as retrieval indexes them."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from services.contract.added_items import AddedItem
from services.contract.bundle import Bundle
from services.contract.errors import ConfigError
from services.contract.onnx import CUDA
from services.platform.item_sync import ItemSync, start_grpc_sync
from services.platform.reload import ModelHolder
from services.platform.service import ServedModel
from services.ranking.added import RankerItems
from services.ranking.batcher import RankBatcher, RankBatching, RankEngine
from services.ranking.config import RankingConfig
from services.ranking.ranker import OnnxRanker


class RankingModel(ServedModel[RankEngine]):
    """Ranker + batcher, warmed for every batch size (health says SERVING only when warm; a hot
    reload swaps in only a warm engine). The previous version stays loaded for the grace period:
    requests pinned to it are scored by it, any other version is refused (FAILED_PRECONDITION;
    docs/bundle.md), then its engine is closed."""

    def __init__(self, config: RankingConfig) -> None:
        self.config = config
        self.sync: ItemSync | None = None

    def from_bundle(self, bundle: Bundle) -> RankEngine:
        config = self.config
        ranker = OnnxRanker.from_bundle(
            bundle,
            prefer_gpu=config.prefer_gpu,
            intra_op_threads=config.intra_op_threads,
            max_candidates=config.max_candidates,
        )
        if config.device == "cuda" and ranker.provider != CUDA:
            raise ConfigError(
                f"RECSERVE_RANKING_DEVICE=cuda but onnxruntime gave {ranker.provider}"
            )
        batcher: RankBatcher | RankBatching | None = None
        inline = config.inline_for(ranker.provider)
        if config.max_batch > 1 and inline and config.max_delay_ms == 0:
            batcher = RankBatching(ranker, max_batch=config.max_batch)  # no worker, no queue
        elif config.max_batch > 1:
            batcher = RankBatcher(
                ranker,
                max_batch=config.max_batch,
                max_delay_s=config.max_delay_ms / 1000.0,
                inline=inline,
            )
        items = None
        if config.feature_addr is not None and config.item_sync_s > 0:
            items = RankerItems.from_bundle(bundle, ranker)
            if self.sync is not None and len(self.sync):  # a reload's build: before it serves
                items.index_pending(self.sync.entries())
        return RankEngine(ranker, batcher, items)

    def adopt(self, old: RankEngine, new: RankEngine) -> None:
        if self.sync is not None:
            self.sync.resync()  # entries pulled while the new engine was built

    @contextlib.asynccontextmanager
    async def item_sync(self, holder: ModelHolder[RankEngine]) -> AsyncIterator[None]:
        """Service.background: pull the registry of added items (RECSERVE_FEATURE_ADDR) into
        the serving engine's ranker, from the holder's creation to after the watcher."""

        async def apply(entries: list[AddedItem]) -> None:
            items = holder.current.items
            if items is not None:
                await items.apply_registry(entries)

        config = self.config
        self.sync = start_grpc_sync(
            config.feature_addr, config.item_sync_s, config.server.security, apply, name="ranking"
        )
        try:
            yield
        finally:
            if self.sync is not None:
                await self.sync.stop()

    def warm_up(self, model: RankEngine, bundle: Bundle) -> None:
        model.ranker.warm_up(self.config.max_batch)

    async def retire(self, model: RankEngine) -> None:
        await model.close()

    async def close(self, model: RankEngine) -> None:
        await model.close()

    def describe(self, model: RankEngine, bundle: Bundle) -> str:
        return (
            f"ranking on {model.ranker.provider}; micro-batches of <= {self.config.max_batch} "
            f"(max delay {self.config.max_delay_ms:.2f} ms)"
        )
