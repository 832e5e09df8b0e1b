"""python -m services.gateway: config -> bundle -> pipeline (split or embedded) -> serve (the life
cycle: services.platform.service; the served model: services.gateway.served)."""

from __future__ import annotations

import sys

from services.gateway.app import start_gateway
from services.gateway.config import GatewaySettings
from services.gateway.pipeline import Pipeline
from services.gateway.served import GatewayModel
from services.gateway.servicer import SERVICE_NAME
from services.platform.service import Service, run_service


def configure() -> Service[Pipeline]:
    settings = GatewaySettings.from_env()
    model = GatewayModel(settings)
    return Service(
        settings.server, settings.bundle, model, SERVICE_NAME,
        start_server=lambda holder: start_gateway(settings, holder, experiments=model.experiments),
        background=model.running,
        watch=model.watch,
    )  # fmt: skip


if __name__ == "__main__":
    sys.exit(run_service("gateway", configure))
