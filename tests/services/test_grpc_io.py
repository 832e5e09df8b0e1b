"""RECSERVE_GRPC_IO: gRPC's I/O stack, chosen before grpc is imported
(services/platform/grpc_io.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from services.contract.errors import ConfigError
from services.platform import grpc_io
from services.platform.server import run_loop

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_posix_is_the_default():
    env: dict[str, str] = {}
    assert grpc_io.apply(env) == "posix"
    assert env["GRPC_EXPERIMENTS"] == grpc_io.POSIX_EXPERIMENTS
    assert "-event_engine_listener" in env["GRPC_EXPERIMENTS"].split(",")


def test_event_engine_leaves_grpcs_default_and_drops_ours_from_a_parent():
    env = {"RECSERVE_GRPC_IO": "event_engine"}
    assert grpc_io.apply(env) == "event_engine"
    assert "GRPC_EXPERIMENTS" not in env
    # a child of a posix process inherits our flags; asked for event_engine it drops them
    env = {"RECSERVE_GRPC_IO": "event_engine", "GRPC_EXPERIMENTS": grpc_io.POSIX_EXPERIMENTS}
    assert grpc_io.apply(env) == "event_engine"
    assert "GRPC_EXPERIMENTS" not in env


def test_an_operators_grpc_experiments_is_kept():
    env = {"GRPC_EXPERIMENTS": "tcp_frame_size_tuning"}
    assert grpc_io.apply(env) == "GRPC_EXPERIMENTS=tcp_frame_size_tuning (set outside recserve)"
    assert env["GRPC_EXPERIMENTS"] == "tcp_frame_size_tuning"


def test_a_bad_setting_changes_nothing_and_the_start_up_check_rejects_it():
    env = {"RECSERVE_GRPC_IO": "quic"}
    assert "not valid" in grpc_io.apply(env)
    assert "GRPC_EXPERIMENTS" not in env

    async def main() -> None:
        raise AssertionError("started")

    coroutine = main()
    with pytest.raises(ConfigError, match="RECSERVE_GRPC_IO='quic' must be one of"):
        run_loop(coroutine, {"RECSERVE_GRPC_IO": "quic"})
    assert coroutine.cr_frame is None


def _child(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in ("GRPC_EXPERIMENTS", grpc_io.ENV)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return out.stdout.strip()


def test_importing_services_sets_it_before_grpc_loads_and_a_call_goes_through():
    # A fresh process: `import services` comes first, then grpc; a unary call over loopback
    # works on the POSIX endpoints (the whole test suite runs on them too, tests/conftest.py).
    code = """
import asyncio, os
import services
from services.platform import grpc_io
import grpc

async def main():
    async def echo(request, context):
        return request
    handler = grpc.unary_unary_rpc_method_handler(echo)
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("t.E", {"E": handler}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        answer = await channel.unary_unary("/t.E/E")(b"ping", timeout=10)
    await server.stop(None)
    return answer

print(grpc_io.describe(), os.environ["GRPC_EXPERIMENTS"], asyncio.run(main()))
"""
    described, flags, answer = _child(code).split()
    assert described == "posix"
    assert flags == grpc_io.POSIX_EXPERIMENTS
    assert answer == "b'ping'"


def test_grpc_imported_first_is_reported():
    code = "import grpc, services\nfrom services.platform import grpc_io\nprint(grpc_io.describe())"
    assert _child(code) == "event_engine (grpc was imported first)"
    assert _child(code, RECSERVE_GRPC_IO="event_engine") == "event_engine (grpc was imported first)"
