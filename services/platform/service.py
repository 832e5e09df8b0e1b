"""One life cycle for every service process (`python -m services.<name>`):

    settings from the environment (strict) -> logging -> bundle -> served model, built and
    warmed -> ModelHolder -> the service's background tasks -> hot-reload watcher -> gRPC
    server (health, reflection, TLS) + /metrics -> serve until SIGTERM/SIGINT -> stop the
    watcher, then the background tasks -> close the model serving last.

A service supplies its settings, a ServedModel (how to build, warm, hand over and release the
object its servicer serves) and its servicer's registration; `run_service` does the rest:

    def configure() -> Service[RankEngine]:
        config = RankingConfig.from_env()
        model = RankingModel(config)
        return Service(config.server, config.bundle, model, SERVICE_NAME, register=...)

    sys.exit(run_service("ranking", configure))
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Any, Generic, Protocol, TypeVar

import grpc

from services.contract.bundle import Bundle
from services.platform.config import BundleSettings, ServerSettings
from services.platform.logging import setup_logging
from services.platform.metrics import MetricsSettings, start_metrics_http, watch_model
from services.platform.reload import BundleWatcher, ModelHolder, ReloadSettings, make_watcher
from services.platform.server import create_server_from_settings, run_main, serve

T = TypeVar("T")

Register = Callable[[grpc.aio.Server], None]


class ServedModel(Protocol[T]):
    """How a service builds, warms, hands over and releases the object it serves (T: what its
    servicer reads from the ModelHolder). Subclass it to inherit the no-op defaults."""

    hot_reload: bool = True  # False: the process keeps the bundle it started with

    def from_bundle(self, bundle: Bundle) -> T:
        """The model for `bundle`: at start-up, then for each reload (in the reload thread)."""
        ...

    def warm_up(self, model: T, bundle: Bundle) -> None:
        """Run it once before it serves, so no request pays a lazy set-up (start-up and reload)."""

    def adopt(self, old: T, new: T) -> None:
        """At a reload's swap, on the event loop: carry the live state of `old` over to `new`."""

    async def retire(self, model: T) -> None:
        """A replaced model, once its grace period (RECSERVE_RELOAD_GRACE_S) is over."""

    async def close(self, model: T) -> None:
        """The model serving when the process stops (the server and the watcher are stopped)."""

    def describe(self, model: T, bundle: Bundle) -> str:
        """What the start-up line says about the model, after "bundle V loaded from P"."""
        return ""


Background = Callable[[ModelHolder[T]], AbstractAsyncContextManager[object]]
Watch = Callable[[ModelHolder[T], ReloadSettings], BundleWatcher[T] | None]
StartServer = Callable[[ModelHolder[T]], Awaitable[tuple[grpc.aio.Server, int]]]


@dataclass(frozen=True)
class Service(Generic[T]):
    """What one service process serves, and how; run_service does the rest.

    register: the servicer(s) over the holder, added to a server built from `server` (or
    start_server: a started server of the service's own, e.g. the gateway's app.start_gateway).
    background: a context entered once the holder exists (after the model) and left after the
    watcher stops (item sync, experiments). watch: the hot-reload watcher, when the default
    (make_watcher with the model's from_bundle + warm_up and adopt) does not fit."""

    server: ServerSettings
    bundle: BundleSettings
    model: ServedModel[T]
    service_name: str  # full gRPC name, e.g. "recserve.v1.RankingService"
    register: Callable[[ModelHolder[T]], Register] | None = None
    start_server: StartServer[T] | None = None
    background: Background[T] | None = None
    watch: Watch[T] | None = None

    def __post_init__(self) -> None:
        if (self.register is None) == (self.start_server is None):
            raise TypeError("Service needs exactly one of register and start_server")


def run_service(name: str, configure: Callable[[], Service[Any]]) -> int:
    """A service's whole process: `configure()` reads its settings; then serve_service. Invalid
    configuration or a bad bundle -> one stderr line, exit 2 (server.run_main). The exit code."""

    async def main() -> None:
        await serve_service(name, configure())

    return run_main(name, main)


async def serve_service(name: str, service: Service[T]) -> None:
    """Load, build, warm, serve until SIGTERM/SIGINT, stop; `name` ("ranking") names the logs,
    the reload watcher and RECSERVE_<NAME>_METRICS_PORT. On the running event loop."""
    setup_logging(name, service.server.log_level, service.server.log_format)
    log = logging.getLogger(f"services.{name}")
    reload = ReloadSettings.from_env()
    metrics = MetricsSettings.for_service(name)
    bundle = service.bundle.load()
    served = service.model
    model = served.from_bundle(bundle)
    holder = ModelHolder(model, bundle.version, grace_s=reload.grace_s, on_retire=served.retire)
    async with contextlib.AsyncExitStack() as stack:  # unwinds in reverse, whatever failed
        stack.push_async_callback(_close_current, served, holder)  # last: the model serving then
        served.warm_up(model, bundle)
        details = served.describe(model, bundle)
        log.info(
            "bundle %s loaded from %s%s",
            bundle.version, bundle.root, f"; {details}" if details else "",
        )  # fmt: skip
        watch_model(name, holder)  # recserve_model_info
        http = start_metrics_http(metrics.port, metrics.host)
        if http is not None:
            stack.callback(http.shutdown)
        if service.background is not None:
            await stack.enter_async_context(service.background(holder))
        watcher = _start_watcher(name, service, holder, reload, bundle)
        if watcher is not None:
            stack.push_async_callback(watcher.stop)
        if service.start_server is not None:
            server, _port = await service.start_server(holder)
        else:
            assert service.register is not None
            server, _port = await create_server_from_settings(
                service.register(holder), service.server, service.service_name
            )
        await serve(server, grace=service.server.grace_s)


def _start_watcher(
    name: str,
    service: Service[T],
    holder: ModelHolder[T],
    reload: ReloadSettings,
    bundle: Bundle,
) -> BundleWatcher[T] | None:
    """A started watcher when reload is on (version "latest", RECSERVE_RELOAD_INTERVAL_S > 0)
    and the model allows it; else None."""
    if service.watch is not None:
        return service.watch(holder, reload)
    served = service.model
    if not served.hot_reload:
        return None

    def build(new_bundle: Bundle) -> T:  # in the reload thread: a new model only swaps in warm
        new = served.from_bundle(new_bundle)
        served.warm_up(new, new_bundle)
        return new

    return make_watcher(
        service.bundle, reload, holder, build,
        name=name, expected_spec=bundle.feature_spec, adopt=served.adopt,
    )  # fmt: skip


async def _close_current(served: ServedModel[T], holder: ModelHolder[T]) -> None:
    await served.close(holder.current)
