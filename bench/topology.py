"""Start the systems under test as local processes on loopback and stop them again:
the plumbing stand-in (5 processes), recserve split (5) and recserve embedded (N gateway
processes sharing one port with SO_REUSEPORT)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

from services.common.healthcheck import check
from services.launcher import BACKENDS, LaunchError, free_port


class ProcessGroup:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = Path(log_dir)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.procs: dict[str, subprocess.Popen] = {}
        self.target = ""
        self._spawned: dict[str, float] = {}
        self.startup_s: dict[str, float] = {}  # spawn -> SERVING (and `logs_say`), per process

    def spawn(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        self._spawned[name] = time.monotonic()
        with open(self.log_dir / f"{name}.log", "wb") as out:
            self.procs[name] = subprocess.Popen(
                argv,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )

    def log(self, name: str) -> str:
        path = self.log_dir / f"{name}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def wait(self, targets: dict[str, str], timeout: float = 180.0, logs_say: str = "") -> None:
        """Until each target answers SERVING (and each named log contains `logs_say`)."""
        deadline = time.monotonic() + timeout
        waiting = dict(targets)
        while waiting:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise LaunchError(
                        f"{name} exited with {proc.returncode}\n{self.log(name)[-2000:]}"
                    )
            for name, target in list(waiting.items()):
                if check(target, timeout=1.0) and (not logs_say or logs_say in self.log(name)):
                    del waiting[name]
                    self.startup_s[name] = round(time.monotonic() - self._spawned[name], 1)
            if waiting and time.monotonic() > deadline:
                raise LaunchError(f"not ready after {timeout:.0f}s: {list(waiting)}")
            time.sleep(0.2)

    def memory_mb(self) -> dict[str, dict[str, float]]:
        """Per process: resident set now and its peak (VmRSS / VmHWM of /proc/<pid>/status)."""
        out = {}
        for name, proc in self.procs.items():
            fields = {}
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
                    key, _, value = line.partition(":")
                    if key in ("VmRSS", "VmHWM"):
                        fields[key] = round(int(value.split()[0]) / 1024, 1)  # kB -> MB
            out[name] = {
                "rss_mb": fields.get("VmRSS", 0.0),
                "peak_rss_mb": fields.get("VmHWM", 0.0),
            }
        return out

    def stop(self) -> None:
        for proc in self.procs.values():
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.procs.clear()

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
            group.spawn(
                name, [*base, name, "--port", str(ports[name]), "--bundle", str(bundle_dir)]
            )
        group.wait({n: f"127.0.0.1:{ports[n]}" for n in BACKENDS})
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
        )
        group.target = f"127.0.0.1:{ports['gateway']}"
        group.wait({"gateway": group.target})
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
    group = ProcessGroup(log_dir)
    env = {**_recserve_env(artifacts, version), **(extra_env or {})}
    try:
        ports = {name: free_port() for name in (*BACKENDS, "gateway")}
        for name in BACKENDS:
            group.spawn(
                name,
                [sys.executable, "-m", f"services.{name}"],
                {
                    **env,
                    f"RECSERVE_{name.upper()}_PORT": str(ports[name]),
                    # its own feedback log: never the lock of another run's store in ./state
                    "RECSERVE_FEATURE_LOG_DIR": str(Path(log_dir) / "state" / name),
                },
            )
        group.wait({n: f"127.0.0.1:{ports[n]}" for n in BACKENDS})
        gw_env = {**env, "RECSERVE_MODE": "split", "RECSERVE_GATEWAY_PORT": str(ports["gateway"])}
        for name in BACKENDS:
            gw_env[f"RECSERVE_{name.upper()}_ADDR"] = f"127.0.0.1:{ports[name]}"
        group.spawn("gateway", [sys.executable, "-m", "services.gateway"], gw_env)
        group.target = f"127.0.0.1:{ports['gateway']}"
        group.wait({"gateway": group.target})
    except BaseException:
        group.stop()
        raise
    return group


def start_embedded(
    artifacts: Path,
    version: str,
    log_dir: Path,
    gateways: int = 1,
    extra_env: dict[str, str] | None = None,
) -> ProcessGroup:
    """`gateways` processes on one port (SO_REUSEPORT: the kernel spreads connections)."""
    group = ProcessGroup(log_dir)
    port = free_port()
    env = {
        **_recserve_env(artifacts, version),
        "RECSERVE_MODE": "embedded",
        "RECSERVE_GATEWAY_PORT": str(port),
        "RECSERVE_REUSE_PORT": "1",
        "RECSERVE_RANKING_DEVICE": "cpu",
        "RECSERVE_LOG_LEVEL": "info",
        **(extra_env or {}),
    }
    group.target = f"127.0.0.1:{port}"
    try:
        for i in range(gateways):  # one feedback log per process (a log has one writer)
            state = {"RECSERVE_FEATURE_LOG_DIR": str(Path(log_dir) / "state" / f"gateway{i}")}
            group.spawn(f"gateway{i}", [sys.executable, "-m", "services.gateway"], {**env, **state})
        group.wait({f"gateway{i}": group.target for i in range(gateways)}, logs_say="listening")
    except BaseException:
        group.stop()
        raise
    return group
