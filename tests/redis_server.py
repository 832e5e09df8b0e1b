"""A real redis-server for tests, started on loopback with a durable AOF and stopped after.

    server = RedisServer.start(tmp_path)   # or the `redis_server` fixture below
    server.url                             # redis://127.0.0.1:<free port>/0
    server.kill(); server.restart()        # SIGKILL, then the same port and --dir (AOF replay)

Without redis-server on PATH the tests that need it are skipped, unless RECSERVE_REQUIRE_REDIS=1
(CI), in which case they fail.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

START_TIMEOUT_S = 15.0


def redis_server_binary() -> str:
    """Path of redis-server; skips (or fails with RECSERVE_REQUIRE_REDIS=1) when missing."""
    path = shutil.which("redis-server")
    if path is None:
        message = "redis-server is not installed"
        if os.environ.get("RECSERVE_REQUIRE_REDIS") == "1":
            pytest.fail(f"{message} and RECSERVE_REQUIRE_REDIS=1")
        pytest.skip(message)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class RedisServer:
    def __init__(self, binary: str, port: int, directory: Path) -> None:
        self.binary, self.port, self.dir = binary, port, directory
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, directory: Path) -> RedisServer:
        directory.mkdir(parents=True, exist_ok=True)
        server = cls(redis_server_binary(), free_port(), directory)
        server.restart()
        return server

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, decode_responses=True)

    def restart(self) -> None:
        """(Re)start on the same port and --dir: Redis replays the AOF found there."""
        assert self.proc is None, "already running"
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                "--appendonly", "yes", "--appendfsync", "always", "--dir", str(self.dir),
                "--logfile", str(self.dir / "redis.log")]  # fmt: skip
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + START_TIMEOUT_S
        with self.client() as client:
            while True:
                try:
                    if client.ping():
                        return
                except (redis.ConnectionError, redis.BusyLoadingError):
                    pass
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    log = (self.dir / "redis.log").read_text(errors="replace")[-2000:]
                    self.stop()
                    raise RuntimeError(f"redis-server did not start on {self.port}:\n{log}")
                time.sleep(0.02)

    def kill(self) -> None:
        """SIGKILL: no shutdown, no final fsync; only what was fsynced survives."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One durable redis-server per test module (tests use distinct key prefixes)."""
    server = RedisServer.start(tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()
