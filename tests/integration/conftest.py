"""Real servers on port 0 over loopback, hosted on an event loop in a background thread so the
tests can call them with the ordinary synchronous client (recserve.client.RecserveClient)."""

from __future__ import annotations

import asyncio
import dataclasses
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from services.contract.bundle import Bundle
from services.contract.vocab import Vocabulary
from services.gateway.app import build_pipeline, build_stages, start_gateway
from services.gateway.config import GatewaySettings
from services.platform.config import BundleSettings
from services.platform.server import create_server


class LoopThread:
    """An asyncio loop running forever in a daemon thread; `run` awaits a coroutine on it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 120.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture(scope="module")
def loop_thread() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="session")
def bundle(tiny_bundle: Path) -> Bundle:
    return Bundle.load(tiny_bundle)


@pytest.fixture(scope="session")
def known_users(bundle: Bundle) -> list[str]:
    return Vocabulary.load(bundle.path("user_ids.npy")).ids.tolist()


def gateway_settings(bundle: Bundle, mode: str, **backends: str) -> GatewaySettings:
    """Settings as the environment would give them, pointed at this bundle and these backends."""
    env = {
        "RECSERVE_MODE": mode,
        "RECSERVE_ARTIFACTS": str(bundle.root.parent),
        "RECSERVE_BUNDLE_VERSION": bundle.root.name,
        "RECSERVE_RANKING_DEVICE": "cpu",
        **{f"RECSERVE_{name.upper()}_ADDR": target for name, target in backends.items()},
        # Generous: the first call on a loaded 2-core CI box also opens the channel.
        **{f"RECSERVE_{name.upper()}_DEADLINE_MS": "5000" for name in backends},
    }
    settings = GatewaySettings.from_env(env)
    assert settings.bundle == BundleSettings(bundle.root.parent, bundle.root.name)
    return settings


StartGateway = Callable[..., str]


@pytest.fixture(scope="module")
def start_embedded(bundle: Bundle, loop_thread: LoopThread) -> Iterator[StartGateway]:
    """start(**stage_overrides) -> target of an embedded gateway; overrides replace stages."""
    started = []
    settings = gateway_settings(bundle, "embedded")

    def start(**overrides) -> str:
        async def go():
            stages = dataclasses.replace(build_stages(settings, bundle), **overrides)
            server, port = await start_gateway(
                settings, build_pipeline(settings, bundle, stages), port=0
            )
            started.append(server)
            return f"127.0.0.1:{port}"

        return loop_thread.run(go())

    yield start
    for server in started:
        loop_thread.run(server.stop(None))


@pytest.fixture(scope="module")
def embedded_gateway(start_embedded: StartGateway) -> str:
    return start_embedded()


@pytest.fixture(scope="module")
def split_stack(bundle: Bundle, loop_thread: LoopThread) -> Iterator[dict[str, str]]:
    """All five real servers in this process, each on its own port; -> {name: target}."""
    from services.feature import servicer as feature
    from services.feature.store import InMemoryFeatureStore
    from services.ranking import servicer as ranking
    from services.ranking.ranker import OnnxRanker
    from services.retrieval import servicer as retrieval
    from services.retrieval.retriever import Retriever
    from services.uservalue import servicer as uservalue
    from services.uservalue.scorer import UserValueScorer

    backends = {
        "feature": (
            feature.register(InMemoryFeatureStore.from_bundle(bundle)),
            "recserve.v1.FeatureService",
        ),
        "retrieval": (
            retrieval.register(Retriever.from_bundle(bundle)),
            "recserve.v1.RetrievalService",
        ),
        "ranking": (
            ranking.register(OnnxRanker.from_bundle(bundle, prefer_gpu=False)),
            "recserve.v1.RankingService",
        ),
        "uservalue": (
            uservalue.register(UserValueScorer.from_bundle(bundle), bundle.version),
            "recserve.v1.UserValueService",
        ),
    }
    servers = []

    async def start_all() -> dict[str, str]:
        targets = {}
        for name, (register, service_name) in backends.items():
            server, port = await create_server(register, port=0, service_names=[service_name])
            servers.append(server)
            targets[name] = f"127.0.0.1:{port}"
        settings = gateway_settings(bundle, "split", **targets)
        server, port = await start_gateway(settings, build_pipeline(settings, bundle), port=0)
        servers.append(server)
        return {**targets, "gateway": f"127.0.0.1:{port}"}

    targets = loop_thread.run(start_all())
    yield targets
    for server in reversed(servers):
        loop_thread.run(server.stop(None))
