"""Wiring: settings + bundle -> pipeline (embedded or split) -> a started gateway server, and
the hot reload of that pipeline (services.common.reload) when the bundle version is "latest"."""

from __future__ import annotations

import asyncio

import grpc

from services.common.added_items import AddedItem
from services.common.bundle import Bundle
from services.common.item_sync import ItemSync, grpc_list_fn, store_list_fn
from services.common.reload import BundleWatcher, ModelHolder, ReloadSettings, make_watcher
from services.common.remap import ItemVocabs
from services.common.server import create_server_from_settings
from services.common.types import FilterSpec
from services.gateway.catalog import GatewayCatalog
from services.gateway.config import GatewaySettings
from services.gateway.experiments import ExperimentRunner
from services.gateway.new_items import repair_proxies, sync_catalog
from services.gateway.pipeline import Pipeline
from services.gateway.servicer import SERVICE_NAME, register
from services.gateway.stages import Stages
from services.gateway.stages.inprocess import (
    InProcessFeatures,
    InProcessRetrieval,
    build_in_process,
)
from services.gateway.stages.remote import RemoteFeatures, connect


def build_stages(settings: GatewaySettings, bundle: Bundle) -> Stages:
    if settings.mode == "embedded":
        return build_in_process(bundle, prefer_gpu=settings.prefer_gpu)
    return connect(settings, bundle.feature_spec)


def build_pipeline(
    settings: GatewaySettings,
    bundle: Bundle,
    stages: Stages | None = None,
    vocabs: ItemVocabs | None = None,
) -> Pipeline:
    """`stages` overrides the mode's own (tests inject failing stages this way). `vocabs` (split
    mode) lets the pipeline read item indices of other bundle versions during a reload."""
    stages = stages if stages is not None else build_stages(settings, bundle)
    if vocabs is None and settings.mode == "split":
        vocabs = ItemVocabs(settings.bundle.artifacts)
    if vocabs is not None:
        vocabs.add_bundle(bundle)
    return Pipeline(
        stages,
        GatewayCatalog.from_bundle(bundle),
        bundle.feature_spec,
        settings.limits,
        vocabs,
        bundle.dataset,
    )


def start_item_sync(settings: GatewaySettings, holder: ModelHolder[Pipeline]) -> ItemSync | None:
    """Pull the registry of added items (split: from the feature service over the feature
    stage's channel, so TLS and the internal key apply; embedded: from the in-process store)
    into the live pipeline: its catalog, and in embedded mode its retriever too. None when
    RECSERVE_ITEM_SYNC_S is 0. On the running loop."""
    if settings.item_sync_s <= 0:
        return None
    features = holder.current.stages.features
    if isinstance(features, InProcessFeatures):
        list_fn = store_list_fn(lambda: holder.current.stages.features.store)
    elif isinstance(features, RemoteFeatures):
        list_fn = grpc_list_fn(features.channel)
    else:  # injected test stages
        return None

    async def apply(entries: list[AddedItem]) -> None:
        pipeline = holder.current
        retrieval = pipeline.stages.retrieval
        if isinstance(retrieval, InProcessRetrieval):
            from services.retrieval.sync import apply_registry  # embedded only: FAISS, ONNX

            await apply_registry(retrieval.retriever, entries)
        sync_catalog(pipeline, entries)
        await repair_proxies(pipeline, entries)

    sync = ItemSync(list_fn, apply, interval_s=settings.item_sync_s, name="gateway")
    sync.start()
    return sync


def apply_registry_now(pipeline: Pipeline, sync: ItemSync | None) -> None:
    """A pipeline built by a hot reload (in the build thread, before it serves) gets the added
    items the sync knows: its catalog extension and, embedded, its retriever's index."""
    if sync is None or not len(sync):
        return
    entries = sync.entries()
    retrieval = pipeline.stages.retrieval
    if isinstance(retrieval, InProcessRetrieval):
        from services.retrieval.sync import index_pending

        index_pending(retrieval.retriever, entries)
    sync_catalog(pipeline, entries)


def start_reloading(
    settings: GatewaySettings,
    holder: ModelHolder[Pipeline],
    reload: ReloadSettings,
    sync: ItemSync | None = None,
) -> BundleWatcher[Pipeline] | None:
    """Watch artifacts/LATEST (version "latest" and RECSERVE_RELOAD_INTERVAL_S > 0 only).

    Embedded: a whole new pipeline (stages included, warmed) per bundle; the new feature store
    takes over the live per-user state at the swap. Split: the new bundle's catalog over the
    same backend connections (the backends reload themselves). Either way the added items the
    item sync knows are applied to the new pipeline before the swap, and the sync re-applies
    the whole registry right after it (entries pulled while the new pipeline was built)."""

    def build(bundle: Bundle) -> Pipeline:
        current = holder.current
        if settings.mode == "embedded":
            features = current.stages.features
            if isinstance(features, InProcessFeatures) and features.durable and features.bundle:
                # The durable store owns the event log (one writer per directory): it stays on
                # its bundle, labels users with that version, and the new pipeline maps their
                # item indices by id, as in split mode. A restart moves it to the new bundle.
                vocabs = current.vocabs or ItemVocabs(settings.bundle.artifacts)
                vocabs.add_bundle(features.bundle)
                fresh = build_in_process(bundle, prefer_gpu=settings.prefer_gpu, features=features)
                pipeline = build_pipeline(settings, bundle, fresh, vocabs)
            else:
                pipeline = build_pipeline(settings, bundle)
            apply_registry_now(pipeline, sync)
            warm_up(pipeline)
            return pipeline
        pipeline = build_pipeline(settings, bundle, current.stages, current.vocabs)
        apply_registry_now(pipeline, sync)
        return pipeline

    def adopt(old: Pipeline, new: Pipeline) -> None:
        if (
            isinstance(old.stages.features, InProcessFeatures)
            and isinstance(new.stages.features, InProcessFeatures)
            and new.stages.features is not old.stages.features
        ):
            new.stages.features.store.adopt_live_state(old.stages.features.store)
        if sync is not None:
            sync.resync()

    return make_watcher(
        settings.bundle, reload, holder, build,
        name="gateway", expected_spec=holder.current.spec, adopt=adopt,
    )  # fmt: skip


def warm_up(pipeline: Pipeline) -> None:
    """Serve a few requests on the new pipeline (in the building thread, on a loop of its own)
    so the first real requests never pay ONNX Runtime's or FAISS's set-up."""
    features = pipeline.stages.features
    users = ["warm-up"]
    if isinstance(features, InProcessFeatures) and len(features.store.users) > 1:
        users.append(features.store.users.id_of(1))

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
