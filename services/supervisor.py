"""Keep local service processes running: start them in order, each awaited until it reports
SERVING over grpc.health.v1; restart one that dies, on its own port, with exponential backoff
while the others keep serving; give up on a service that crashes too often; stop them all.

    sup = Supervisor(log_dir="logs", policy=RestartPolicy())
    sup.add(ServiceSpec("ranking", [python, "-m", "services.ranking"], env, port=50054))
    sup.start([["ranking"]], timeout=120)   # LaunchError when one exits or is not SERVING
    sup.watch()                              # from now on a crash is restarted (daemon thread)
    sup.status()["ranking"].restarts         # what happened, for reports and tests
    sup.stop()                               # SIGTERM (SIGKILL after a timeout)

A restarted process is probed without a gRPC client in this process (a TCP connect, then
`python -m services.platform.healthcheck` in a child): a caller driving load over grpc.aio in
this same process is never stalled by a synchronous channel polling a refused port.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from services.platform.healthcheck import check
from services.platform.security import ClientTLS

STARTING, SERVING, BACKOFF, FAILED, STOPPED = "starting", "serving", "backoff", "failed", "stopped"


class LaunchError(RuntimeError):
    """A service exited or did not become healthy in time (the message holds its log tail)."""


@dataclass(frozen=True)
class RestartPolicy:
    """A crash is restarted after backoff_s * 2^(n-1) seconds (at most max_backoff_s), n = the
    crashes within the last window_s; the max_crashes-th crash in the window gives up on that
    service (the others keep running). A restart not SERVING after start_timeout_s is killed
    and counts as a crash."""

    backoff_s: float = 0.5
    max_backoff_s: float = 30.0
    max_crashes: int = 5
    window_s: float = 120.0
    start_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        if self.backoff_s < 0 or self.max_backoff_s < self.backoff_s:
            raise ValueError("need 0 <= backoff_s <= max_backoff_s")
        if self.max_crashes < 1 or self.window_s <= 0 or self.start_timeout_s <= 0:
            raise ValueError("max_crashes, window_s and start_timeout_s must be positive")

    def delay_s(self, crashes_in_window: int) -> float:
        return min(self.max_backoff_s, self.backoff_s * 2 ** max(0, crashes_in_window - 1))


@dataclass(frozen=True)
class ServiceSpec:
    """How to run one service: argv and its whole environment; `port` is probed for health
    (on 127.0.0.1); `ready_log`, when set, must also appear in its log before it counts."""

    name: str
    argv: Sequence[str]
    env: Mapping[str, str]
    port: int
    ready_log: str = ""

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.port}"


@dataclass(frozen=True)
class ServiceStatus:
    name: str
    port: int
    pid: int | None
    state: str  # starting | serving | backoff | failed | stopped
    restarts: int  # processes started after the first
    exit_codes: tuple[int, ...]  # of every unexpected exit, in order
    startup_s: float | None  # its last start: spawn -> SERVING (None: not SERVING yet)


@dataclass
class _Service:
    spec: ServiceSpec
    popen: subprocess.Popen | None = None
    state: str = STOPPED
    restarts: int = 0
    exit_codes: list[int] = field(default_factory=list)
    crashes: list[float] = field(default_factory=list)  # monotonic times
    restart_at: float = 0.0
    started_at: float = 0.0
    startup_s: float | None = None
    probe: subprocess.Popen | None = None


class Supervisor:
    """log_dir: each service's stdout+stderr goes to <log_dir>/<name>.log (appended across
    restarts); None = inherit ours. announce: called with one line per supervision event
    (crash, restart, SERVING again, giving up); default: stderr."""

    def __init__(
        self,
        *,
        log_dir: Path | str | None = None,
        policy: RestartPolicy | None = None,
        probe_tls: ClientTLS | None = None,
        announce: Callable[[str], None] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.policy = policy or RestartPolicy()
        self.probe_tls = probe_tls
        self.python = python
        self.announce = announce or (lambda line: print(f"recserve: {line}", file=sys.stderr))
        self._services: dict[str, _Service] = {}
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # --- starting --------------------------------------------------------------------------
    def add(self, spec: ServiceSpec) -> None:
        if spec.name in self._services:
            raise ValueError(f"service {spec.name!r} already added")
        self._services[spec.name] = _Service(spec)

    def launch(self, name: str) -> None:
        """Start (or start again) one service's process; it is `starting` until SERVING."""
        with self._lock:
            service = self._services[name]
            if service.popen is not None and service.popen.poll() is None:
                raise LaunchError(f"{name} is already running (pid {service.popen.pid})")
            service.popen = self._spawn(service.spec, append=service.restarts > 0)
            service.state, service.started_at = STARTING, time.monotonic()
            service.startup_s = None

    def start(self, groups: Sequence[Sequence[str]], timeout: float = 120.0) -> None:
        """Launch each group in turn, waiting for it to be SERVING; on failure stop everything."""
        try:
            for group in groups:
                for name in group:
                    self.launch(name)
                self.wait_serving(group, timeout)
        except BaseException:
            self.stop()
            raise

    def wait_serving(self, names: Sequence[str], timeout: float) -> None:
        """Until each named service reports SERVING (a synchronous health check per poll)."""
        deadline = time.monotonic() + timeout
        waiting = list(names)
        while waiting:
            for name in list(waiting):
                service = self._services[name]
                if service.popen is None or service.popen.poll() is not None:
                    code = None if service.popen is None else service.popen.returncode
                    raise LaunchError(
                        f"{name} exited with code {code} during start-up\n{self.log_tail(name)}"
                    )
                if check(service.spec.target, timeout=1.0, tls=self.probe_tls) and self._log_ready(
                    service.spec
                ):
                    self._serving(service)
                    waiting.remove(name)
            if waiting and time.monotonic() > deadline:
                tails = "\n".join(f"[{n}]\n{self.log_tail(n)}" for n in waiting)
                raise LaunchError(f"not SERVING after {timeout:.0f}s: {waiting}\n{tails}")
            if waiting:
                time.sleep(0.1)

    # --- supervision -----------------------------------------------------------------------
    def watch(self, interval_s: float = 0.1) -> None:
        """Restart crashed services from now on, in a daemon thread (until stop())."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, args=(interval_s,), name="supervisor", daemon=True
            )
            self._thread.start()

    def _loop(self, interval_s: float) -> None:
        while not self._stopping.wait(interval_s):
            with self._lock:
                for service in self._services.values():
                    if not self._stopping.is_set():
                        self._tend(service, time.monotonic())

    def _tend(self, service: _Service, now: float) -> None:
        name, popen, policy = service.spec.name, service.popen, self.policy
        if service.state in (SERVING, STARTING) and popen is not None:
            if popen.poll() is not None:
                self._crashed(service, popen.returncode, now)
            elif service.state == STARTING and now > service.started_at + policy.start_timeout_s:
                popen.kill()
                popen.wait()
                self._crashed(service, popen.returncode, now, why="not SERVING in time")
            elif service.state == STARTING and self._probe(service):
                self._serving(service)
                self.announce(f"{name} SERVING again on port {service.spec.port} "
                              f"(restart {service.restarts})")  # fmt: skip
        elif service.state == BACKOFF and now >= service.restart_at:
            service.restarts += 1
            self.launch(name)
            self.announce(f"{name} restarting on port {service.spec.port} "
                          f"(restart {service.restarts}, pid {service.popen.pid})")  # fmt: skip

    def _serving(self, service: _Service) -> None:
        service.state = SERVING
        service.startup_s = round(time.monotonic() - service.started_at, 2)

    def _crashed(self, service: _Service, code: int, now: float, why: str = "") -> None:
        name, policy = service.spec.name, self.policy
        service.exit_codes.append(code)
        service.crashes = [t for t in service.crashes if now - t < policy.window_s] + [now]
        n = len(service.crashes)
        reason = why or f"exited with code {code}"
        if n >= policy.max_crashes:
            service.state = FAILED
            self.announce(f"{name} {reason}; giving up on it after {n} crashes within "
                          f"{policy.window_s:g}s (the other services keep running)")  # fmt: skip
            return
        delay = policy.delay_s(n)
        service.state, service.restart_at = BACKOFF, now + delay
        self.announce(f"{name} {reason}; restarting in {delay:.1f}s (crash {n}; "
                      f"giving up at {policy.max_crashes} in {policy.window_s:g}s)")  # fmt: skip

    def _probe(self, service: _Service) -> bool:
        """Non-blocking: True once a health-check child has reported SERVING."""
        if service.probe is not None:
            code = service.probe.poll()
            if code is None:
                return False
            service.probe = None
            return code == 0 and self._log_ready(service.spec)
        with (
            contextlib.suppress(OSError),
            socket.create_connection(("127.0.0.1", service.spec.port), timeout=0.05),
        ):
            service.probe = subprocess.Popen(
                [self.python, "-m", "services.platform.healthcheck", service.spec.target],
                env={**service.spec.env},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
            )
        return False

    # --- what is running ---------------------------------------------------------------------
    def status(self) -> dict[str, ServiceStatus]:
        with self._lock:
            return {
                name: ServiceStatus(
                    name,
                    s.spec.port,
                    _pid(s.popen),
                    s.state,
                    s.restarts,
                    tuple(s.exit_codes),
                    s.startup_s,
                )
                for name, s in self._services.items()
            }

    def pid(self, name: str) -> int | None:
        return _pid(self._services[name].popen)

    def pids(self) -> dict[str, int]:
        return {name: pid for name, s in self._services.items() if (pid := _pid(s.popen))}

    def exited(self) -> dict[str, int]:
        """Services not running now that were not stopped by us -> their last exit code."""
        with self._lock:
            return {
                name: s.popen.returncode
                for name, s in self._services.items()
                if s.popen is not None and s.popen.poll() is not None and s.state != STOPPED
            }

    def failed(self) -> list[str]:
        """Services given up on (too many crashes in the window)."""
        return [name for name, s in self._services.items() if s.state == FAILED]

    def kill(self, name: str, sig: int = signal.SIGKILL) -> int:
        """Send `sig` to a service's process (fault injection) -> its pid."""
        pid = self.pid(name)
        if pid is None:
            raise LaunchError(f"{name} is not running")
        os.kill(pid, sig)
        return pid

    def log_tail(self, name: str, lines: int = 20) -> str:
        path = None if self.log_dir is None else self.log_dir / f"{name}.log"
        if path is None or not path.is_file():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- stopping ----------------------------------------------------------------------------
    def stop(self, timeout: float = 15.0, first: Sequence[str] = ()) -> dict[str, int]:
        """SIGTERM every process (`first` ones first), SIGKILL after `timeout` -> exit codes."""
        self._stopping.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5.0)
        with self._lock:
            order = sorted(self._services.values(), key=lambda s: s.spec.name not in first)
            running = [s for s in order if s.popen is not None and s.popen.poll() is None]
            for service in order:
                if service.probe is not None:
                    service.probe.kill()
                    service.probe.wait()
                    service.probe = None
            for service in running:
                with contextlib.suppress(ProcessLookupError):
                    service.popen.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + timeout
            codes = {
                s.spec.name: _terminate(s.popen, max(0.0, deadline - time.monotonic()))
                for s in running
            }
            for s in order:  # unsupervised crashes too (a supervised one was announced)
                if s.popen is not None and s not in running and s.state in (STARTING, SERVING):
                    codes[s.spec.name] = s.popen.returncode
            for service in order:
                service.state = STOPPED
            return codes

    def _spawn(self, spec: ServiceSpec, append: bool) -> subprocess.Popen:
        out = None
        if self.log_dir is not None:  # a restart appends to the log of the crashed process
            self.log_dir.mkdir(parents=True, exist_ok=True)
            out = open(self.log_dir / f"{spec.name}.log", "ab" if append else "wb")  # noqa: SIM115
        try:
            return subprocess.Popen(
                list(spec.argv),
                env=dict(spec.env),
                stdout=out,
                stderr=subprocess.STDOUT if out is not None else None,
                stdin=subprocess.DEVNULL,
            )
        finally:
            if out is not None:
                out.close()

    def _log_ready(self, spec: ServiceSpec) -> bool:
        if not spec.ready_log:
            return True
        return spec.ready_log in self.log_tail(spec.name, lines=10_000)


def _pid(popen: subprocess.Popen | None) -> int | None:
    return popen.pid if popen is not None and popen.poll() is None else None


def _terminate(popen: subprocess.Popen, wait_s: float) -> int:
    try:
        return popen.wait(wait_s)
    except subprocess.TimeoutExpired:
        popen.kill()
        return popen.wait()
