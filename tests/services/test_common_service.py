"""services.platform.service: one life cycle for every service (build, warm, serve, hot reload,
stop), with a recording ServedModel over a real bundle and a real grpc.aio server."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from services.contract.bundle import Bundle
from services.platform import service as service_module
from services.platform.config import BundleSettings, ServerSettings
from services.platform.reload import ModelHolder
from services.platform.server import create_server
from services.platform.service import ServedModel, Service, serve_service
from tests.services.reload_helpers import clone, point_latest

SETTINGS = ServerSettings(
    host="127.0.0.1",
    port=0,
    grace_s=0.25,
    max_message_bytes=4 << 20,
    reuse_port=False,
    log_level="INFO",
    log_format="text",
)


class Recording(ServedModel[str]):
    """The 'model' is a string naming the bundle version it was built from."""

    def __init__(self, hot_reload: bool = True) -> None:
        self.hot_reload = hot_reload
        self.calls: list[tuple[Any, ...]] = []

    def from_bundle(self, bundle: Bundle) -> str:
        self.calls.append(("build", bundle.version))
        return f"model-{bundle.version}"

    def warm_up(self, model: str, bundle: Bundle) -> None:
        self.calls.append(("warm", model, bundle.version))

    def adopt(self, old: str, new: str) -> None:
        self.calls.append(("adopt", old, new))

    async def retire(self, model: str) -> None:
        self.calls.append(("retire", model))

    async def close(self, model: str) -> None:
        self.calls.append(("close", model))

    def describe(self, model: str, bundle: Bundle) -> str:
        return f"built {model}"


@pytest.fixture
def artifacts(tiny_bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    clone(tiny_bundle, root, "v1")
    point_latest(root, "v1")
    monkeypatch.setenv("RECSERVE_RELOAD_INTERVAL_S", "0.05")
    monkeypatch.setenv("RECSERVE_RELOAD_GRACE_S", "0")
    # The root logger stays pytest's (setup_logging would replace its handlers).
    monkeypatch.setattr(service_module, "setup_logging", lambda *args: None)
    return root


async def _until(condition: Any, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_life_cycle_with_a_hot_reload(artifacts: Path, tiny_bundle: Path, caplog) -> None:
    model = Recording()
    calls = model.calls
    servers: list[grpc.aio.Server] = []

    @contextlib.asynccontextmanager
    async def background(holder: ModelHolder[str]) -> AsyncIterator[None]:
        calls.append(("background", holder.current))
        yield
        calls.append(("background stopped", holder.current))

    async def start_server(holder: ModelHolder[str]) -> tuple[grpc.aio.Server, int]:
        server, port = await create_server(lambda s: None, port=0, service_names=["test.Svc"])
        calls.append(("server", holder.current))
        servers.append(server)
        return server, port

    service = Service(
        SETTINGS, BundleSettings(artifacts, "latest"), model, "test.Svc",
        start_server=start_server, background=background,
    )  # fmt: skip

    async def scenario() -> None:
        task = asyncio.create_task(serve_service("test", service))
        await _until(lambda: servers or task.done())
        clone(tiny_bundle, artifacts, "v2")
        point_latest(artifacts, "v2")
        await _until(lambda: ("retire", "model-v1") in calls or task.done())
        await servers[0].stop(None)  # as SIGTERM would, through serve()
        await task

    with caplog.at_level("INFO"):
        asyncio.run(scenario())
    assert calls == [
        ("build", "v1"),
        ("warm", "model-v1", "v1"),
        ("background", "model-v1"),
        ("server", "model-v1"),
        ("build", "v2"),
        ("warm", "model-v2", "v2"),
        ("adopt", "model-v1", "model-v2"),
        ("retire", "model-v1"),  # grace 0: at the next poll
        ("background stopped", "model-v2"),
        ("close", "model-v2"),
    ]
    assert f"bundle v1 loaded from {artifacts / 'v1'}; built model-v1" in caplog.messages


def test_register_path_without_hot_reload(artifacts: Path, monkeypatch) -> None:
    model = Recording(hot_reload=False)
    registered: list[str] = []
    served: list[float] = []

    def no_watcher(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model without hot reload gets no watcher")

    async def serve_once(server: grpc.aio.Server, *, grace: float) -> None:
        served.append(grace)
        await server.stop(None)

    monkeypatch.setattr(service_module, "make_watcher", no_watcher)
    monkeypatch.setattr(service_module, "serve", serve_once)

    def register(holder: ModelHolder[str]):  # type: ignore[no-untyped-def]
        registered.append(holder.current)
        return lambda server: None

    service = Service(
        SETTINGS, BundleSettings(artifacts, "latest"), model, "test.Svc", register=register
    )
    asyncio.run(serve_service("test", service))
    assert registered == ["model-v1"] and served == [SETTINGS.grace_s]
    assert model.calls == [("build", "v1"), ("warm", "model-v1", "v1"), ("close", "model-v1")]


def test_a_failing_start_still_closes_the_model(artifacts: Path) -> None:
    model = Recording()

    async def no_server(holder: ModelHolder[str]) -> tuple[grpc.aio.Server, int]:
        raise OSError("cannot bind")

    service = Service(
        SETTINGS, BundleSettings(artifacts, "latest"), model, "test.Svc", start_server=no_server
    )
    with pytest.raises(OSError, match="cannot bind"):
        asyncio.run(serve_service("test", service))
    assert model.calls[-1] == ("close", "model-v1")


def test_a_service_needs_one_way_to_start_its_server(artifacts: Path) -> None:
    with pytest.raises(TypeError):
        Service(SETTINGS, BundleSettings(artifacts, "latest"), Recording(), "test.Svc")
