"""The feature service's served model (services.platform.service): the feature store.

The store is in memory (default: snapshot + event log replay; feedback is acknowledged only once
it is in the event log, see docs/feedback.md; on SIGTERM the log is drained and a snapshot is
written before the process exits) or in Redis (RECSERVE_FEATURE_BACKEND=redis, several replicas;
Redis's append-only file is the durable log, see docs/feature_store.md)."""

from __future__ import annotations

from services.contract.bundle import Bundle
from services.feature.config import FeatureConfig, StoreConfig
from services.feature.redis_store import RedisFeatureStore
from services.feature.snapshot import Durability, open_durable_store
from services.feature.store import FeatureStore, InMemoryFeatureStore
from services.platform.service import ServedModel


def build_store(
    config: FeatureConfig, store_config: StoreConfig, bundle: Bundle
) -> tuple[FeatureStore, Durability | None]:
    """The configured store, and the in-memory store's event log + snapshots (None for Redis)."""
    limits = {"max_batch": config.max_events, "max_ids": config.max_ids}
    if store_config.backend == "redis":
        store = RedisFeatureStore.connect(
            bundle,
            store_config.redis_url,
            prefix=store_config.redis_prefix,
            timeout_s=store_config.redis_timeout_s,
            require_durable=not store_config.redis_allow_non_durable,
            **limits,
        )
        return store, None
    return open_durable_store(bundle, config.durability, **limits)


class FeatureModel(ServedModel[FeatureStore]):
    """A new store per bundle (hot reload), for every backend. In memory, the new store takes
    over the live per-user state at the swap, re-encoded by item id, with the event log and
    snapshots (InMemoryFeatureStore.adopt_live_state); a Redis store reads the same
    version-independent user lists (docs/feature_store.md, "Bundle changes"). The previous
    store answers requests pinned to its version for the grace period (one version per
    request, docs/bundle.md)."""

    def __init__(self, config: FeatureConfig, store_config: StoreConfig) -> None:
        self.config = config
        self.store_config = store_config
        self.durability: Durability | None = None
        self.started = False

    def from_bundle(self, bundle: Bundle) -> FeatureStore:
        config = self.config
        if self.started and self.store_config.backend == "memory":  # a reload: adopt() fills it
            return InMemoryFeatureStore.from_bundle(
                bundle, max_batch=config.max_events, max_ids=config.max_ids
            )
        store, durability = build_store(config, self.store_config, bundle)
        if not self.started:
            self.durability = durability
        self.started = True
        return store

    def adopt(self, old: FeatureStore, new: FeatureStore) -> None:
        if isinstance(old, InMemoryFeatureStore) and isinstance(new, InMemoryFeatureStore):
            new.adopt_live_state(old)

    async def close(self, model: FeatureStore) -> None:
        if self.durability is not None:
            self.durability.close()  # drain the log, write a snapshot
