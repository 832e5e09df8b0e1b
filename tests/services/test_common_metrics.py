"""Prometheus metrics every service exports, and the Grafana dashboard that reads them."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.feature.servicer import register
from services.platform import metrics
from services.platform.security import aio_channel
from services.platform.server import create_server
from tests.services.test_common_interceptors import SERVICE, MissingUserStore

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "recserve.json"


def test_rpcs_are_counted_and_timed_by_service_method_and_code() -> None:
    labels = {"service": "grpc.health.v1.Health", "method": "Check", "code": "OK"}
    before = metrics.sample("recserve_rpc_requests_total", labels)
    timed = {"service": "grpc.health.v1.Health", "method": "Check"}
    count_before = metrics.sample("recserve_rpc_latency_seconds_count", timed)

    async def calls() -> None:
        server, port = await create_server(
            register(MissingUserStore()), port=0, service_names=[SERVICE]
        )
        try:
            async with aio_channel(f"127.0.0.1:{port}") as channel:
                stub = health_pb2_grpc.HealthStub(channel)
                for _ in range(3):
                    await stub.Check(health_pb2.HealthCheckRequest(service=""))
        finally:
            await server.stop(None)

    asyncio.run(calls())
    assert metrics.sample("recserve_rpc_requests_total", labels) == before + 3
    assert metrics.sample("recserve_rpc_latency_seconds_count", timed) == count_before + 3


def test_model_info_follows_the_holder() -> None:
    class Ranker:
        provider = "CPUExecutionProvider"

    class Holder:
        version = "v1"
        current = type("Engine", (), {"ranker": Ranker()})()

    holder = Holder()
    metrics.watch_model("ranking-test", holder)
    labels = {"service": "ranking-test", "version": "v1", "provider": "CPUExecutionProvider"}
    assert metrics.sample("recserve_model_info", labels) == 1.0
    holder.version = "v2"  # a hot reload: read at scrape time
    assert metrics.sample("recserve_model_info", {**labels, "version": "v2"}) == 1.0
    assert metrics.sample("recserve_model_info", labels) == 0.0


def test_every_dashboard_query_uses_a_metric_recserve_exports() -> None:
    exported = {m.name for m in metrics.REGISTRY.collect()}
    known = exported  # histograms and counters are queried with their suffixes
    dashboard = json.loads(DASHBOARD.read_text())
    names = set()
    for panel in dashboard["panels"]:
        for target in panel["targets"]:
            names |= set(re.findall(r"\b((?:recserve|process)_[a-z_]+)", target["expr"]))
    assert names
    for name in names:
        base = re.sub(r"_(bucket|count|sum|total)$", "", name)
        assert name in known or base in known, name
