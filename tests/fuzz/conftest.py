"""The whole recserve stack in this process for the fuzz tests: four backends and a split-mode
gateway, each a real grpc.aio server on 127.0.0.1 port 0, built from the services' own config
classes with deliberately small limits (so the per-request bounds are cheap to cross)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from services.contract.bundle import Bundle
from services.platform.server import create_server_from_settings
from tests.integration.conftest import LoopThread  # one event loop in a thread, shared

sys.path.insert(0, str(Path(__file__).parent))  # fuzzlib: strategies and helpers
from fuzzlib import LIMIT_ENV, MAX_MESSAGE_BYTES


@dataclass(frozen=True)
class Stack:
    targets: dict[str, str]  # service name -> 127.0.0.1:port
    bundle: Bundle
    env: dict[str, str]


def _env(bundle: Bundle) -> dict[str, str]:
    return {
        "RECSERVE_ARTIFACTS": str(bundle.root.parent),
        "RECSERVE_BUNDLE_VERSION": bundle.root.name,
        "RECSERVE_RANKING_DEVICE": "cpu",
        "RECSERVE_MAX_MESSAGE_BYTES": str(MAX_MESSAGE_BYTES),
        **LIMIT_ENV,
    }


async def _start_all(
    bundle: Bundle, env: dict[str, str], servers: list, closers: list
) -> dict[str, str]:
    from services.feature import servicer as feature
    from services.feature.config import FeatureConfig
    from services.feature.store import InMemoryFeatureStore
    from services.gateway.app import build_pipeline, start_gateway
    from services.gateway.config import GatewaySettings
    from services.ranking import servicer as ranking
    from services.ranking.batcher import RankBatcher
    from services.ranking.config import RankingConfig
    from services.ranking.ranker import OnnxRanker
    from services.retrieval import servicer as retrieval
    from services.retrieval.config import RetrievalConfig
    from services.retrieval.retriever import Retriever
    from services.uservalue import servicer as uservalue
    from services.uservalue.config import UserValueConfig
    from services.uservalue.scorer import UserValueScorer

    fc, rc = FeatureConfig.from_env(env), RetrievalConfig.from_env(env)
    kc, uc = RankingConfig.from_env(env), UserValueConfig.from_env(env)
    ranker = OnnxRanker.from_bundle(bundle, prefer_gpu=False, max_candidates=kc.max_candidates)
    batcher = RankBatcher(ranker, max_batch=kc.max_batch)
    closers.append(batcher.close)
    backends = {
        "feature": (
            feature.register(
                InMemoryFeatureStore.from_bundle(
                    bundle, max_batch=fc.max_events, max_ids=fc.max_ids
                )
            ),
            fc.server,
            "recserve.v1.FeatureService",
        ),
        "retrieval": (
            retrieval.register(Retriever.from_bundle(bundle, max_k=rc.max_k)),
            rc.server,
            "recserve.v1.RetrievalService",
        ),
        "ranking": (ranking.register(ranker, batcher), kc.server, "recserve.v1.RankingService"),
        "uservalue": (
            uservalue.register(UserValueScorer.from_bundle(bundle), bundle.version, uc.max_users),
            uc.server,
            "recserve.v1.UserValueService",
        ),
    }
    targets = {}
    for name, (register, settings, service_name) in backends.items():
        server, port = await create_server_from_settings(register, settings, service_name, port=0)
        servers.append(server)
        targets[name] = f"127.0.0.1:{port}"
    gw_env = {
        **env,
        "RECSERVE_MODE": "split",
        **{f"RECSERVE_{n.upper()}_ADDR": t for n, t in targets.items()},
        **{f"RECSERVE_{n.upper()}_DEADLINE_MS": "10000" for n in targets},
    }
    settings = GatewaySettings.from_env(gw_env)
    server, port = await start_gateway(settings, build_pipeline(settings, bundle), port=0)
    servers.append(server)
    return {**targets, "gateway": f"127.0.0.1:{port}"}


@pytest.fixture(scope="module")
def stack(tiny_bundle: Path) -> Iterator[Stack]:
    bundle = Bundle.load(tiny_bundle)
    env = _env(bundle)
    loop = LoopThread()
    servers: list = []
    closers: list = []
    try:
        targets = loop.run(_start_all(bundle, env, servers, closers))
        yield Stack(targets, bundle, env)
    finally:
        for server in reversed(servers):
            loop.run(server.stop(None))
        for close in closers:
            loop.run(close())
        loop.close()
