"""Wiring: settings + bundle -> pipeline (embedded or split) -> a started gateway server."""

from __future__ import annotations

import grpc

from services.common.bundle import Bundle
from services.common.server import create_server_from_settings
from services.gateway.catalog import GatewayCatalog
from services.gateway.config import GatewaySettings
from services.gateway.pipeline import Pipeline
from services.gateway.servicer import SERVICE_NAME, register
from services.gateway.stages import Stages
from services.gateway.stages.inprocess import build_in_process
from services.gateway.stages.remote import connect


def build_stages(settings: GatewaySettings, bundle: Bundle) -> Stages:
    if settings.mode == "embedded":
        return build_in_process(bundle, prefer_gpu=settings.prefer_gpu)
    return connect(settings, bundle.feature_spec)


def build_pipeline(
    settings: GatewaySettings, bundle: Bundle, stages: Stages | None = None
) -> Pipeline:
    """`stages` overrides the mode's own (tests inject failing stages this way)."""
    stages = stages if stages is not None else build_stages(settings, bundle)
    return Pipeline(
        stages, GatewayCatalog.from_bundle(bundle), bundle.feature_spec, settings.limits
    )


async def start_gateway(
    settings: GatewaySettings, pipeline: Pipeline, *, port: int | None = None
) -> tuple[grpc.aio.Server, int]:
    """Started server and its bound port (port=0: any free port; None: the configured one)."""
    return await create_server_from_settings(
        register(pipeline), settings.server, SERVICE_NAME, port=port
    )
