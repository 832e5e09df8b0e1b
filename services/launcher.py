"""Run recserve's services as local processes: `python -m services.<name>` each, configured
through the environment on loopback ports, started backends first, each awaited until it
reports SERVING over grpc.health.v1, and stopped with SIGTERM (SIGKILL after a timeout).
The processes are kept by a services.supervisor.Supervisor: with a RestartPolicy
(`recserve serve`, `make fault`) a crashed service is restarted on its own port while the others
keep serving; without one (tests, one-shot runs) a crash is only reported by exited().

    with Launcher(artifacts="artifacts", mode="split") as running:   # 5 processes
        RecserveClient(running.gateway_target).recommend("196")

Configuration: an unknown RECSERVE_* variable is refused at construction (ConfigError with a
did-you-mean), and the feedback log's directory is made absolute (`feedback_log`) before any
service starts.

Metrics: with a base port (metrics_port=, else RECSERVE_METRICS_PORT in the environment) each
process serves /metrics on base + METRICS_OFFSETS[name] (RECSERVE_<NAME>_METRICS_PORT, when set,
wins); two processes on one port are refused at construction.

Security settings (RECSERVE_TLS_*, RECSERVE_*API_KEY*, see docs/security.md) pass through to
every service in the environment; the launcher's own health probes dial TLS with the client
side of them (RECSERVE_TLS_CA, RECSERVE_TLS_CLIENT_CERT/KEY), read and checked at construction.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

from services.contract.errors import ConfigError
from services.feature.config import DurabilitySettings
from services.platform.config import env_int
from services.platform.env_names import check_environment
from services.platform.security import ClientTLS
from services.supervisor import (
    LaunchError,
    RestartPolicy,
    ServiceSpec,
    ServiceStatus,
    Supervisor,
)

__all__ = ["BACKENDS", "DEFAULT_PORTS", "METRICS_OFFSETS", "LaunchError", "Launcher",
           "RestartPolicy", "ServiceStatus", "free_port"]  # fmt: skip

BACKENDS = ("feature", "retrieval", "ranking", "uservalue")
DEFAULT_PORTS = {"gateway": 50051, "feature": 50052, "retrieval": 50053, "ranking": 50054,
                 "uservalue": 50055}  # fmt: skip
METRICS_OFFSETS = {"gateway": 0, "feature": 1, "retrieval": 2, "ranking": 3, "uservalue": 4}


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def metrics_ports(
    names: tuple[str, ...], env: Mapping[str, str], base: int | None = None
) -> dict[str, int]:
    """{name: its /metrics port} for the processes that serve one (none when no base is set and
    no RECSERVE_<NAME>_METRICS_PORT is). ConfigError when two would share a port."""
    if base is None:
        base = env_int("RECSERVE_METRICS_PORT", 0, min_value=0, max_value=65535, env=env)
    ports = {}
    for name in names:
        default = base + METRICS_OFFSETS[name] if base else 0
        var = f"RECSERVE_{name.upper()}_METRICS_PORT"
        port = env_int(var, default, min_value=0, max_value=65535, env=env)
        if port:
            ports[name] = port
    clash = {p for p in ports.values() if list(ports.values()).count(p) > 1}
    if clash:
        users = ", ".join(f"{n}={p}" for n, p in ports.items() if p in clash)
        raise ConfigError(f"metrics ports collide ({users}): set RECSERVE_METRICS_PORT as a "
                          "base port and leave RECSERVE_<SERVICE>_METRICS_PORT unset")  # fmt: skip
    return ports


class Launcher:
    """mode="split": feature, retrieval, ranking, uservalue and a gateway calling them over gRPC.
    mode="embedded": one gateway process with every stage in-process.

    ports: {name: port}; missing names get a free port (pass DEFAULT_PORTS for the usual ones).
    log_dir: each service's stdout+stderr goes to <log_dir>/<name>.log; None = inherit ours.
    restart: restart crashed services with this policy (None: report them, restart nothing).
    metrics_port: base of the per-process /metrics ports (None: RECSERVE_METRICS_PORT or off).
    announce: one line per supervision event (default: stderr).
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
        restart: RestartPolicy | None = None,
        metrics_port: int | None = None,
        announce: Callable[[str], None] | None = None,
    ) -> None:
        if mode not in ("split", "embedded"):
            raise ValueError(f"mode must be 'split' or 'embedded', got {mode!r}")
        self.mode = mode
        self.names = (*BACKENDS, "gateway") if mode == "split" else ("gateway",)
        self.ports = {name: (ports or {}).get(name) or free_port() for name in self.names}
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.base_env = {
            **os.environ,
            **(env or {}),
            "PYTHONUNBUFFERED": "1",
            "RECSERVE_HOST": "127.0.0.1",
            "RECSERVE_ARTIFACTS": str(Path(artifacts).resolve()),
            "RECSERVE_BUNDLE_VERSION": version,
        }
        check_environment(self.base_env)  # a misspelt RECSERVE_* fails here, not in 5 logs
        # Durable feedback goes where the services would put it, made absolute here and printed.
        durability = DurabilitySettings.from_env(self.base_env)
        self.feedback_log = durability.log.directory if durability.log is not None else None
        if self.feedback_log is not None:
            self.base_env["RECSERVE_FEATURE_LOG_DIR"] = str(self.feedback_log)
        self.metrics_ports = metrics_ports(self.names, self.base_env, metrics_port)
        self.supervised = restart is not None
        self.supervisor = Supervisor(
            log_dir=self.log_dir,
            policy=restart,
            probe_tls=ClientTLS.from_env(self.base_env),  # ConfigError on a bad setting
            announce=announce,
            python=python,
        )
        for name in self.names:
            argv = [python, "-m", f"services.{name}"]
            self.supervisor.add(ServiceSpec(name, argv, self._env(name), self.ports[name]))

    @property
    def gateway_target(self) -> str:
        return f"127.0.0.1:{self.ports['gateway']}"

    @property
    def targets(self) -> dict[str, str]:
        return {name: f"127.0.0.1:{port}" for name, port in self.ports.items()}

    def _env(self, name: str) -> dict[str, str]:
        env = {**self.base_env, f"RECSERVE_{name.upper()}_PORT": str(self.ports[name])}
        if name in self.metrics_ports:
            env[f"RECSERVE_{name.upper()}_METRICS_PORT"] = str(self.metrics_ports[name])
        if name == "gateway":
            env["RECSERVE_MODE"] = self.mode
            for backend in BACKENDS:
                if backend in self.ports:
                    env[f"RECSERVE_{backend.upper()}_ADDR"] = f"127.0.0.1:{self.ports[backend]}"
        elif name in ("retrieval", "ranking") and "feature" in self.ports:  # syncs added items
            env["RECSERVE_FEATURE_ADDR"] = f"127.0.0.1:{self.ports['feature']}"
        return env

    def start(self, timeout: float = 120.0) -> None:
        """Start the backends together, wait for them, then the gateway; from then on supervise
        (with a restart policy). Raises LaunchError (and stops what it started)."""
        backends = [name for name in self.names if name != "gateway"]
        self.supervisor.start([backends, ["gateway"]] if backends else [["gateway"]], timeout)
        if self.supervised:
            self.supervisor.watch()

    def status(self) -> dict[str, ServiceStatus]:
        return self.supervisor.status()

    def pids(self) -> dict[str, int]:
        """Running services -> their process ids."""
        return self.supervisor.pids()

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to one service (fault injection) -> the pid it had."""
        return self.supervisor.kill(name, sig)

    def exited(self) -> dict[str, int]:
        """Services not running now that we did not stop -> their last exit code."""
        return self.supervisor.exited()

    def failed(self) -> list[str]:
        """Services the supervisor gave up on (too many crashes in its window)."""
        return self.supervisor.failed()

    def log_path(self, name: str) -> Path | None:
        return None if self.log_dir is None else self.log_dir / f"{name}.log"

    def log_tail(self, name: str, lines: int = 20) -> str:
        return self.supervisor.log_tail(name, lines)

    def stop(self, timeout: float = 15.0) -> dict[str, int]:
        """SIGTERM the gateway first, then the backends; SIGKILL after `timeout`. -> exit codes."""
        return self.supervisor.stop(timeout, first=("gateway",))

    def __enter__(self) -> Launcher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
