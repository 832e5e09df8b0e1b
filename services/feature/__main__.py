"""python -m services.feature: config -> bundle -> feature store -> serve (the life cycle:
services.platform.service; the store, its durability and its reloads: services.feature.served)."""

from __future__ import annotations

import sys

from services.feature.config import SERVICE_NAME, FeatureConfig, StoreConfig
from services.feature.served import FeatureModel
from services.feature.servicer import register
from services.feature.store import FeatureStore
from services.platform.service import Service, run_service


def configure() -> Service[FeatureStore]:
    config = FeatureConfig.from_env()
    model = FeatureModel(config, StoreConfig.from_env())
    return Service(config.server, config.bundle, model, SERVICE_NAME, register=register)


if __name__ == "__main__":
    sys.exit(run_service("feature", configure))
