"""Server bootstrap shared by every service: health, reflection, error interceptor, signals.

    server, port = await create_server(register, port=0, service_names=[...])  # started
    await serve(server, grace=5.0)  # until SIGTERM/SIGINT, then graceful stop

`create_server` is a coroutine: grpc.aio servers belong to the running event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from services.contract.errors import BundleError, ConfigError
from services.platform import env_names, grpc_io, heap, tracing
from services.platform.config import ServerSettings
from services.platform.env import env_choice
from services.platform.interceptors import ErrorInterceptor
from services.platform.security import SecuritySettings

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_MAX_MESSAGE_BYTES = 4 << 20
EXIT_BAD_CONFIG = 2

_health_by_server: weakref.WeakKeyDictionary[grpc.aio.Server, health.aio.HealthServicer] = (
    weakref.WeakKeyDictionary()
)


async def create_server(
    register: Callable[[grpc.aio.Server], None],
    *,
    port: int = 0,
    host: str = "127.0.0.1",
    service_names: Sequence[str],
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    interceptors: Sequence[grpc.aio.ServerInterceptor] = (),
    reuse_port: bool = False,
    security: SecuritySettings | None = None,
) -> tuple[grpc.aio.Server, int]:
    """Build, bind and start a grpc.aio server; returns (server, bound port).

    `register(server)` adds the service's servicers. Health reports SERVING for "" and each
    of `service_names` (full names, e.g. "recserve.v1.FeatureService"); reflection lists them.
    port=0 binds an ephemeral port (tests). Must be awaited inside the running event loop.
    `security` (default: off) adds TLS / mutual TLS on the port and the API-key interceptor,
    which runs before every other interceptor (health stays open; see docs/security.md).
    """
    security = security if security is not None else SecuritySettings()
    security.check_services(service_names)
    auth = security.auth_interceptor()
    options = [
        ("grpc.max_receive_message_length", max_message_bytes),
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.so_reuseport", 1 if reuse_port else 0),
    ]
    chain = [
        *tracing.server_interceptors(),  # outermost: the span sees the final status
        *([auth] if auth is not None else []),
        ErrorInterceptor(),
        *interceptors,
    ]
    server = grpc.aio.server(interceptors=chain, options=options)
    register(server)

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    for name in ("", *service_names):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    _health_by_server[server] = health_servicer

    reflection.enable_server_reflection(
        (*service_names, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    address = f"{host}:{port}"
    if security.server_tls is None:
        bound = server.add_insecure_port(address)
    else:
        bound = server.add_secure_port(address, security.server_tls.credentials())
    if bound == 0:
        raise ConfigError(f"cannot bind {host}:{port}")
    await server.start()
    log.info(
        "listening on %s:%d services=%s %s",
        host,
        bound,
        ",".join(service_names),
        security.describe(),
    )
    return server, bound


async def set_not_serving(server: grpc.aio.Server) -> None:
    """Report NOT_SERVING for every service (load balancers drain us before we stop)."""
    servicer = _health_by_server.get(server)
    if servicer is not None:
        await servicer.enter_graceful_shutdown()


async def serve(server: grpc.aio.Server, *, grace: float) -> None:
    """Run until SIGTERM/SIGINT (or the server terminates), then drain and stop gracefully.
    Logs the process's effective configuration first (one line, secrets masked)."""
    log.info(
        "effective configuration: %s; event loop: %s; grpc io: %s",
        env_names.describe(),
        event_loop_name(),
        grpc_io.describe(),
    )
    # Everything loaded so far lives as long as the process: out of the cyclic GC's scans
    # (services/platform/heap.py).
    log.info("heap frozen: %d objects out of the cyclic GC's scans", heap.freeze())
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
            installed.append(sig)
    stopped = asyncio.ensure_future(stop.wait())
    terminated = asyncio.ensure_future(server.wait_for_termination())
    try:
        await asyncio.wait({stopped, terminated}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        stopped.cancel()
    log.info("shutting down (grace %.1fs)", grace)
    await set_not_serving(server)
    await server.stop(grace)
    terminated.cancel()
    log.info("stopped")


async def create_server_from_settings(
    register: Callable[[grpc.aio.Server], None],
    settings: ServerSettings,
    service_name: str,
    *,
    port: int | None = None,
) -> tuple[grpc.aio.Server, int]:
    """create_server() with a service's ServerSettings (port overrides settings.port)."""
    return await create_server(
        register,
        host=settings.host,
        port=settings.port if port is None else port,
        service_names=[service_name],
        max_message_bytes=settings.max_message_bytes,
        reuse_port=settings.reuse_port,
        security=settings.security,
    )


EVENT_LOOPS = ("auto", "uvloop", "asyncio")


def loop_factory(env: Mapping[str, str] | None = None) -> Callable[[], asyncio.AbstractEventLoop]:
    """The event loop every recserve server runs on (RECSERVE_EVENT_LOOP): `uvloop` (libuv,
    written in Cython: each loop iteration, callback and future costs less Python than the
    standard loop's, measured in docs/performance.md, "uvloop"), `asyncio` (the standard
    library's), or `auto` (default: uvloop when installed, the standard loop otherwise).
    ConfigError when uvloop is asked for and missing."""
    choice = env_choice("RECSERVE_EVENT_LOOP", "auto", EVENT_LOOPS, env)
    if choice != "asyncio":
        try:
            import uvloop
        except ImportError:
            if choice == "uvloop":
                raise ConfigError(
                    "RECSERVE_EVENT_LOOP=uvloop but uvloop is not installed"
                ) from None
        else:
            return uvloop.new_event_loop
    return asyncio.new_event_loop


def run_loop(main: Coroutine[Any, Any, T], env: Mapping[str, str] | None = None) -> T:
    """asyncio.run(main) on the loop RECSERVE_EVENT_LOOP names (loop_factory). A bad setting
    (RECSERVE_EVENT_LOOP, RECSERVE_GRPC_IO) raises ConfigError with `main` closed, never
    started."""
    try:
        factory = loop_factory(env)
        env_choice(grpc_io.ENV, grpc_io.DEFAULT, grpc_io.CHOICES, env)  # checked, noted
    except BaseException:
        main.close()
        raise
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main)


def event_loop_name(loop: asyncio.AbstractEventLoop | None = None) -> str:
    """ "uvloop" or "asyncio": the loop this code runs on (logged at start-up)."""
    loop = loop or asyncio.get_running_loop()
    return "uvloop" if type(loop).__module__.startswith("uvloop") else "asyncio"


def run_main(service_name: str, main: Callable[[], Awaitable[None]]) -> int:
    """Run a service's async main on the configured event loop (loop_factory); invalid config
    (an unknown RECSERVE_* variable included) or a bad bundle -> one stderr line, exit 2."""
    try:
        env_names.check_environment()
        with tracing.traced_process(service_name):
            run_loop(main())
    except (ConfigError, BundleError) as exc:
        print(f"{service_name}: error: {exc}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    except KeyboardInterrupt:
        pass
    return 0
