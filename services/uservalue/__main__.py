"""python -m services.uservalue: config -> bundle -> user-value scorer -> serve
(the life cycle: services.platform.service)."""

from __future__ import annotations

import sys

from services.platform.service import Service, run_service
from services.uservalue.config import SERVICE_NAME, UserValueConfig
from services.uservalue.scorer import UserValueScorer
from services.uservalue.served import UserValueModel
from services.uservalue.servicer import register


def configure() -> Service[UserValueScorer]:
    config = UserValueConfig.from_env()
    return Service(
        config.server, config.bundle, UserValueModel(config.cache_users), SERVICE_NAME,
        register=lambda holder: register(holder, holder.version, config.max_users),
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_service("uservalue", configure))
