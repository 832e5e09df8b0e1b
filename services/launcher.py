"""Run recserve's services as local processes: `python -m services.<name>` each, configured
through the environment on loopback ports, started backends first, each awaited until it
reports SERVING over grpc.health.v1, and stopped with SIGTERM (SIGKILL after a timeout).

    with Launcher(artifacts="artifacts", mode="split") as running:   # 5 processes
        RecserveClient(running.gateway_target).recommend("196")

Security settings (RECSERVE_TLS_*, RECSERVE_*API_KEY*, see docs/security.md) pass through to
every service in the environment; the launcher's own health probes dial TLS with the client
side of them (RECSERVE_TLS_CA, RECSERVE_TLS_CLIENT_CERT/KEY), read and checked at construction.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from services.common.healthcheck import check
from services.common.security import ClientTLS

BACKENDS = ("feature", "retrieval", "ranking", "uservalue")
DEFAULT_PORTS = {"gateway": 50051, "feature": 50052, "retrieval": 50053, "ranking": 50054,
                 "uservalue": 50055}  # fmt: skip


class LaunchError(RuntimeError):
    """A service exited or did not become healthy in time (the message holds its log tail)."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class Process:
    name: str
    port: int
    popen: subprocess.Popen
    log_path: Path | None

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"

    def log_tail(self, lines: int = 20) -> str:
        if self.log_path is None or not self.log_path.is_file():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


class Launcher:
    """mode="split": feature, retrieval, ranking, uservalue and a gateway calling them over gRPC.
    mode="embedded": one gateway process with every stage in-process.

    ports: {name: port}; missing names get a free port (pass DEFAULT_PORTS for the usual ones).
    log_dir: each service's stdout+stderr goes to <log_dir>/<name>.log; None = inherit ours.
    """

    def __init__(
        self,
        artifacts: Path | str,
        version: str = "latest",
        *,
        mode: str = "split",
        ports: Mapping[str, int] | None = None,
        log_dir: Path | str | None = None,
        env: Mapping[str, str] | None = None,
        python: str = sys.executable,
    ) -> None:
        if mode not in ("split", "embedded"):
            raise ValueError(f"mode must be 'split' or 'embedded', got {mode!r}")
        self.mode = mode
        self.names = (*BACKENDS, "gateway") if mode == "split" else ("gateway",)
        self.ports = {name: (ports or {}).get(name) or free_port() for name in self.names}
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.python = python
        self.base_env = {
            **os.environ,
            **(env or {}),
            "PYTHONUNBUFFERED": "1",
            "RECSERVE_HOST": "127.0.0.1",
            "RECSERVE_ARTIFACTS": str(Path(artifacts).resolve()),
            "RECSERVE_BUNDLE_VERSION": version,
        }
        self.probe_tls = ClientTLS.from_env(self.base_env)  # ConfigError on a bad setting
        self.processes: dict[str, Process] = {}

    @property
    def gateway_target(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    def start(self, timeout: float = 120.0) -> None:
        """Start the backends together, wait for them, then the gateway. Raises LaunchError."""
        try:
            backends = [name for name in self.names if name != "gateway"]
            for name in backends:
                self.spawn(name)
            self._wait_healthy(backends, timeout)
            self.spawn("gateway")
            self._wait_healthy(["gateway"], timeout)
        except BaseException:
            self.stop()
            raise

    def spawn(self, name: str) -> None:
        """Start one service on its port (again, after it died or was killed: same port)."""
        env = {**self.base_env, f"RECSERVE_{name.upper()}_PORT": str(self.ports[name])}
        if name == "gateway":
            env["RECSERVE_MODE"] = self.mode
            for backend in BACKENDS:
                if backend in self.ports:
                    env[f"RECSERVE_{backend.upper()}_ADDR"] = f"127.0.0.1:{self.ports[backend]}"
        elif name == "retrieval" and "feature" in self.ports:  # syncs the added-items registry
            env["RECSERVE_FEATURE_ADDR"] = f"127.0.0.1:{self.ports['feature']}"
        log_path, out = None, None
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
            log_path = self.log_dir / f"{name}.log"
            out = open(log_path, "wb")  # noqa: SIM115 -- the child owns it; closed below
        try:
            popen = subprocess.Popen(
                [self.python, "-m", f"services.{name}"],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                stdin=subprocess.DEVNULL,
            )
        finally:
            _close(out)
        self.processes[name] = Process(name, self.ports[name], popen, log_path)

    def _wait_healthy(self, names: list[str], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                proc = self.processes[name]
                if proc.popen.poll() is not None:
                    raise LaunchError(
                        f"{name} exited with code {proc.popen.returncode} during start-up\n"
                        f"{proc.log_tail()}"
                    )
                if check(proc.target, timeout=1.0, tls=self.probe_tls):
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                tails = "\n".join(f"[{n}]\n{self.processes[n].log_tail()}" for n in waiting)
                raise LaunchError(f"not SERVING after {timeout:.0f}s: {waiting}\n{tails}")
            if waiting:
                time.sleep(0.1)

    def exited(self) -> dict[str, int]:
        """Services that have exited (unexpectedly, while running) -> exit code."""
        return {
            n: p.popen.returncode for n, p in self.processes.items() if p.popen.poll() is not None
        }

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """SIGTERM the gateway first, then the backends; SIGKILL after `timeout`. -> exit codes."""
        order = sorted(self.processes.values(), key=lambda p: p.name != "gateway")
        for proc in order:
            if proc.popen.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        codes: dict[str, int] = {}
        for proc in order:
            try:
                codes[proc.name] = proc.popen.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                codes[proc.name] = proc.popen.wait()
        self.processes.clear()
        return codes

    def __enter__(self) -> Launcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _close(handle: IO[bytes] | None) -> None:
    if handle is not None:
        handle.close()
