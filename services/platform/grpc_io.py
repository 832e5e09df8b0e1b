"""gRPC's I/O stack for every recserve process, chosen before grpc is imported.

grpc (1.85, the pinned version) does its network I/O through its EventEngine by default. It
still ships the classic POSIX listener, and one of grpc's experiment flags (`GRPC_EXPERIMENTS`)
selects it: a server's listener, and the connections it accepts, then run on the POSIX
endpoints. A served unary call costs less CPU there, and with one call in flight it is answered
sooner: measured in docs/performance.md, "gRPC's POSIX listener" (`python -m
bench.event_loop_ab --compare grpc-io`). Clients stay on the EventEngine: turning its client off
as well (`-event_engine_client`) made both a closed-loop client and the server process it
called spend more CPU per call in an A/B on the development machine.

`RECSERVE_GRPC_IO`:
  - `posix` (default): GRPC_EXPERIMENTS=POSIX_EXPERIMENTS (-event_engine_listener);
  - `event_engine`: grpc's own default.
A `GRPC_EXPERIMENTS` the operator set is never changed (`describe` says so).

grpc reads GRPC_EXPERIMENTS once, when it is first imported, so the choice is applied by
`services/__init__.py` (`apply`), before any module of recserve imports grpc; the load harness,
the bench and the tests import `services` first for the same reason. Child processes inherit the
variable. This module imports nothing but the standard library.
"""

from __future__ import annotations

import os
import sys
from collections.abc import MutableMapping

ENV = "RECSERVE_GRPC_IO"
CHOICES = ("posix", "event_engine")
DEFAULT = "posix"
EXPERIMENTS_ENV = "GRPC_EXPERIMENTS"
POSIX_EXPERIMENTS = "-event_engine_listener"

_state = {"applied": "not applied"}  # what apply() did in this process, for describe()


def apply(environ: MutableMapping[str, str] | None = None) -> str:
    """Set GRPC_EXPERIMENTS for RECSERVE_GRPC_IO in `environ` (default: os.environ) unless the
    operator set it; returns what this process's grpc will use (describe()'s text). An unknown
    RECSERVE_GRPC_IO changes nothing here: a service's start-up check rejects it
    (services.platform.server.run_loop)."""
    env = os.environ if environ is None else environ
    value = env.get(ENV, DEFAULT).strip().lower()
    given = env.get(EXPERIMENTS_ENV)
    if given is not None and given != POSIX_EXPERIMENTS:
        result = f"{EXPERIMENTS_ENV}={given} (set outside recserve)"
    elif value not in CHOICES:
        had = "posix" if given == POSIX_EXPERIMENTS else "event_engine"
        result = f"{had} ({ENV}={value!r} is not valid)"
    elif "grpc" in sys.modules and environ is None:
        # too late for this process: grpc has read its flags (its children still get them)
        had = "posix" if given == POSIX_EXPERIMENTS else "event_engine"
        result = f"{had} (grpc was imported first)"
        _set(env, value)
    else:
        _set(env, value)
        result = value
    if environ is None:
        _state["applied"] = result
    return result


def _set(env: MutableMapping[str, str], value: str) -> None:
    if value == "posix":
        env[EXPERIMENTS_ENV] = POSIX_EXPERIMENTS
    else:
        env.pop(EXPERIMENTS_ENV, None)  # ours (POSIX_EXPERIMENTS) from a parent process


def describe() -> str:
    """The gRPC I/O stack this process got (`posix`, `event_engine`, or why neither), for the
    start-up line."""
    return _state["applied"]
