"""The feature service's served model (services.common.service): the feature store.

The store is in memory (default: snapshot + event log replay; feedback is acknowledged only once
it is in the event log, see docs/feedback.md; on SIGTERM the log is drained and a snapshot is
written before the process exits) or in Redis (RECSERVE_FEATURE_BACKEND=redis, several replicas;
Redis's append-only file is the durable log, see docs/feature_store.md)."""

from __future__ import annotations

from services.common.bundle import Bundle
from services.common.service import ServedModel
from services.feature.config import FeatureConfig, StoreConfig
from services.feature.redis_store import RedisFeatureStore
from services.feature.snapshot import Durability, open_durable_store
from services.feature.store import FeatureStore, InMemoryFeatureStore


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
    """Hot reload (a new store per bundle, live per-user state carried over at the swap) only for
    the plain in-memory store. With the event log, or with Redis, the store stays on the bundle
    it started with: the gateway translates item indices between versions by item id, and a
    restart (snapshot + log replay, or Redis) moves it to the new bundle without losing events."""

    def __init__(self, config: FeatureConfig, store_config: StoreConfig) -> None:
        self.config = config
        self.store_config = store_config
        self.durability: Durability | None = None
        self.started = False
        self.hot_reload = False

    def from_bundle(self, bundle: Bundle) -> FeatureStore:
        if self.started:  # a reload: only ever a plain in-memory store
            return InMemoryFeatureStore.from_bundle(
                bundle, max_batch=self.config.max_events, max_ids=self.config.max_ids
            )
        store, self.durability = build_store(self.config, self.store_config, bundle)
        self.started = True
        self.hot_reload = self.durability is None and self.store_config.backend == "memory"
        return store

    def adopt(self, old: FeatureStore, new: FeatureStore) -> None:
        assert isinstance(old, InMemoryFeatureStore) and isinstance(new, InMemoryFeatureStore)
        new.adopt_live_state(old)

    async def close(self, model: FeatureStore) -> None:
        if self.durability is not None:
            self.durability.close()  # drain the log, write a snapshot
