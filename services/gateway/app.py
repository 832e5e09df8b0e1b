"""Wiring: settings + bundle -> pipeline (embedded or split) -> a started gateway server, and
the hot reload of that pipeline (services.platform.reload) when the bundle version is "latest".

The mode's own life cycle (stages for a new bundle, what they adopt at the swap, warm-up, the
item sync's source) lives in its stages object (services.gateway.stages: EmbeddedStages,
SplitStages); this module only wires it."""

from __future__ import annotations

import asyncio

import grpc

from services.contract.added_items import AddedItem
from services.contract.bundle import Bundle
from services.contract.types import FilterSpec
from services.gateway.catalog import GatewayCatalog
from services.gateway.config import GatewaySettings
from services.gateway.experiments import ExperimentRunner
from services.gateway.new_items import sync_catalog
from services.gateway.pipeline import Pipeline
from services.gateway.servicer import SERVICE_NAME, register
from services.gateway.stages import Stages
from services.platform.item_sync import ItemSync
from services.platform.reload import BundleWatcher, ModelHolder, ReloadSettings, make_watcher
from services.platform.server import create_server_from_settings


def build_stages(settings: GatewaySettings, bundle: Bundle) -> Stages:
    if settings.mode == "embedded":
        from services.gateway.stages.inprocess import build_in_process  # FAISS, ONNX

        return build_in_process(bundle, prefer_gpu=settings.prefer_gpu)
    from services.gateway.stages.remote import connect

    return connect(settings, bundle.feature_spec, bundle.version)


def build_pipeline(
    settings: GatewaySettings, bundle: Bundle, stages: Stages | None = None
) -> Pipeline:
    """`stages` overrides the mode's own (tests inject failing stages this way)."""
    stages = stages if stages is not None else build_stages(settings, bundle)
    return Pipeline(
        stages,
        GatewayCatalog.from_bundle(bundle),
        bundle.feature_spec,
        settings.limits,
        bundle.dataset,
    )


def start_item_sync(settings: GatewaySettings, holder: ModelHolder[Pipeline]) -> ItemSync | None:
    """Pull the registry of added items (from where the mode's stages read it) into the live
    pipeline: its catalog, and the stages that index items themselves (embedded retrieval).
    None when RECSERVE_ITEM_SYNC_S is 0 or the stages have no registry. On the running loop."""
    if settings.item_sync_s <= 0:
        return None
    list_fn = holder.current.stages.registry_list_fn()
    if list_fn is None:  # injected test stages
        return None

    async def apply(entries: list[AddedItem]) -> None:
        pipeline = holder.current
        await pipeline.stages.apply_registry(entries)
        sync_catalog(pipeline.catalogs, entries)

    sync = ItemSync(list_fn, apply, interval_s=settings.item_sync_s, name="gateway")
    sync.start()
    return sync


def apply_registry_now(pipeline: Pipeline, sync: ItemSync | None) -> None:
    """A pipeline built by a hot reload (in the build thread, before it serves) gets the added
    items the sync knows: its catalog extension and its stages' own index."""
    if sync is None or not len(sync):
        return
    entries = sync.entries()
    pipeline.stages.index_pending(entries)
    sync_catalog(pipeline.catalogs, entries)


def start_reloading(
    settings: GatewaySettings,
    holder: ModelHolder[Pipeline],
    reload: ReloadSettings,
    sync: ItemSync | None = None,
) -> BundleWatcher[Pipeline] | None:
    """Watch artifacts/LATEST (version "latest" and RECSERVE_RELOAD_INTERVAL_S > 0 only).

    A new pipeline per bundle over the stages the mode builds for it (`Stages.for_bundle`),
    warmed when the mode wants it; at the swap the new stages adopt the old ones' live state
    (`Stages.adopt`). The previous pipeline stays in the holder for the grace period: requests
    a backend refuses in the new version are retried on it (services.gateway.pipeline). The
    added items the item sync knows are applied before the swap, and the sync re-applies the
    whole registry right after it (entries pulled while the new pipeline was built)."""
    holder.current.peers = holder.get  # refused requests retry on the holder's other version

    def build(bundle: Bundle) -> Pipeline:
        pipeline = build_pipeline(settings, bundle, holder.current.stages.for_bundle(bundle))
        pipeline.peers = holder.get
        apply_registry_now(pipeline, sync)
        warm_up(pipeline)
        return pipeline

    def adopt(old: Pipeline, new: Pipeline) -> None:
        new.stages.adopt(old.stages)
        if sync is not None:
            sync.resync()

    return make_watcher(
        settings.bundle, reload, holder, build,
        name="gateway", expected_spec=holder.current.spec, adopt=adopt,
    )  # fmt: skip


def warm_up(pipeline: Pipeline) -> None:
    """Serve a few requests on the new pipeline (in the building thread, on a loop of its own)
    so the first real requests never pay ONNX Runtime's or FAISS's set-up; only for stages
    that ask for it (embedded)."""
    users = pipeline.stages.warm_up_users()
    if not users:
        return

    async def serve_some() -> None:
        for user_id in users:
            await pipeline.recommend(user_id, 10, FilterSpec())
        await pipeline.score_users(users)

    asyncio.run(serve_some())


async def start_gateway(
    settings: GatewaySettings,
    pipeline: Pipeline | ModelHolder[Pipeline],
    *,
    port: int | None = None,
    experiments: ExperimentRunner | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Started server and its bound port (port=0: any free port; None: the configured one)."""
    return await create_server_from_settings(
        register(pipeline, experiments), settings.server, SERVICE_NAME, port=port
    )
