"""Start the systems under test as local processes on loopback and stop them again:
the plumbing stand-in (5 processes), recserve split (5) and recserve embedded (N gateway
processes, each on its own port; the harness spreads its calls over them round robin)."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path

from services.launcher import BACKENDS, Launcher, free_port
from services.supervisor import ServiceSpec, Supervisor


class ProcessGroup:
    """The processes of one system under test, kept by a services.supervisor.Supervisor (the
    one `recserve serve` uses) without restarts: a benchmark reports a crash, never hides it."""

    def __init__(self, log_dir: Path, supervisor: Supervisor | None = None) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.supervisor = supervisor or Supervisor(log_dir=self.log_dir)
        self.target = ""

    def spawn(
        self,
        name: str,
        argv: list[str],
        env: dict[str, str] | None = None,
        *,
        port: int = 0,
        ready_log: str = "",
    ) -> None:
        environ = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.supervisor.add(ServiceSpec(name, argv, environ, port, ready_log))
        self.supervisor.launch(name)

    def log(self, name: str) -> str:
        return self.supervisor.log_tail(name, lines=100_000)

    def wait(self, names: list[str], timeout: float = 180.0) -> None:
        """Until each named process answers SERVING on its port (and its log holds its
        ready_log). Raises LaunchError when one exits first."""
        self.supervisor.wait_serving(names, timeout)

    @property
    def startup_s(self) -> dict[str, float]:
        """Spawn -> SERVING (and its ready_log), per process that got there."""
        return {
            name: status.startup_s
            for name, status in self.supervisor.status().items()
            if status.startup_s is not None
        }

    def pids(self) -> dict[str, int]:
        return self.supervisor.pids()

    def memory_mb(self) -> dict[str, dict[str, float]]:
        """Per process: resident set now and its peak (VmRSS / VmHWM of /proc/<pid>/status)."""
        out = {}
        for name, pid in self.pids().items():
            fields = {}
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "VmHWM"):
                        fields[key] = round(int(value.split()[0]) / 1024, 1)  # kB -> MB
            out[name] = {
                "rss_mb": fields.get("VmRSS", 0.0),
                "peak_rss_mb": fields.get("VmHWM", 0.0),
            }
        return out

    def stop(self) -> None:
        self.supervisor.stop()

    def __enter__(self) -> ProcessGroup:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def start_plumbing(bundle_dir: Path, log_dir: Path) -> ProcessGroup:
    group = ProcessGroup(log_dir)
    try:
        ports = {name: free_port() for name in (*BACKENDS, "gateway")}
        base = [sys.executable, "-m", "bench.plumbing"]
        for name in BACKENDS:
            argv = [*base, name, "--port", str(ports[name]), "--bundle", str(bundle_dir)]
            group.spawn(name, argv, port=ports[name])
        group.wait(list(BACKENDS))
        addrs = ",".join(f"127.0.0.1:{ports[n]}" for n in BACKENDS)
        group.spawn(
            "gateway",
            [
                *base,
                "gateway",
                "--port",
                str(ports["gateway"]),
                "--bundle",
                str(bundle_dir),
                "--backends",
                addrs,
            ],
            port=ports["gateway"],
        )
        group.target = f"127.0.0.1:{ports['gateway']}"
        group.wait(["gateway"])
    except BaseException:
        group.stop()
        raise
    return group


def _recserve_env(artifacts: Path, version: str) -> dict[str, str]:
    return {
        "RECSERVE_HOST": "127.0.0.1",
        "RECSERVE_ARTIFACTS": str(Path(artifacts).resolve()),
        "RECSERVE_BUNDLE_VERSION": version,
        "RECSERVE_LOG_LEVEL": "warning",
        "RECSERVE_LOG_FORMAT": "text",
        "OMP_WAIT_POLICY": "PASSIVE",
    }


def start_split(
    artifacts: Path, version: str, log_dir: Path, extra_env: dict[str, str] | None = None
) -> ProcessGroup:
    """recserve split as `recserve serve` starts it (services.launcher), restarts off."""
    env = {
        **_recserve_env(artifacts, version),
        # its own feedback log: never the lock of another run's store in ./state
        "RECSERVE_FEATURE_LOG_DIR": str(Path(log_dir) / "state" / "feature"),
        **(extra_env or {}),
    }
    launcher = Launcher(artifacts, version, mode="split", log_dir=log_dir, env=env)
    group = ProcessGroup(log_dir, launcher.supervisor)
    launcher.start(timeout=180.0)
    group.target = launcher.gateway_target
    return group


def start_embedded(
    artifacts: Path,
    version: str,
    log_dir: Path,
    gateways: int = 1,
    extra_env: dict[str, str] | None = None,
) -> ProcessGroup:
    """`gateways` processes, each on its own port; `group.target` is their address list
    (`ipv4:127.0.0.1:P0,127.0.0.1:P1,...`; one process: 127.0.0.1:P0), which the load harness
    spreads its calls over round robin (loadtest.targets). One port shared with SO_REUSEPORT, as
    `recserve serve` deploys them, would put a one-channel harness's every call on one process:
    the kernel spreads connections, not calls."""
    group = ProcessGroup(log_dir)
    env = {
        **_recserve_env(artifacts, version),
        "RECSERVE_MODE": "embedded",
        "RECSERVE_RANKING_DEVICE": "cpu",
        "RECSERVE_LOG_LEVEL": "info",
        **(extra_env or {}),
    }
    ports = [free_port() for _ in range(gateways)]
    addresses = ",".join(f"127.0.0.1:{port}" for port in ports)
    group.target = f"ipv4:{addresses}" if gateways > 1 else addresses
    try:
        for i, port in enumerate(ports):  # one feedback log per process (a log has one writer)
            own = {
                "RECSERVE_GATEWAY_PORT": str(port),
                "RECSERVE_FEATURE_LOG_DIR": str(Path(log_dir) / "state" / f"gateway{i}"),
            }
            argv = [sys.executable, "-m", "services.gateway"]
            group.spawn(f"gateway{i}", argv, {**env, **own}, port=port, ready_log="listening")
        group.wait([f"gateway{i}" for i in range(gateways)])
    except BaseException:
        group.stop()
        raise
    return group
