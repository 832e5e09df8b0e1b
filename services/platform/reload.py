"""Hot model reload: validate a newly published bundle off the event loop, build the service's
domain object from it, and swap it in with one reference assignment.

    holder = ModelHolder(build(bundle), bundle.version)
    watcher = BundleWatcher(settings.bundle, holder, build, reload=ReloadSettings.from_env())
    watcher.start()            # polls artifacts/LATEST every RECSERVE_RELOAD_INTERVAL_S
    ... holder.current ...     # what a request uses; read once per request
    await watcher.stop()

A bundle is refused (logged with the reason, counted; the old object keeps serving) when its
checksums do not verify, its manifest schema is unsupported, its feature spec is incompatible
with the running one, its ONNX models fail the parity self-check (parity.npz), or building the
domain object fails. In-flight requests finish on the object they started with; the previous
object stays reachable through `holder.get(version)` for RECSERVE_RELOAD_GRACE_S, so a request
pinned to the previous version can still be served by that version (`holder.serve(version)`
refuses any other with FAILED_PRECONDITION naming the versions held; docs/bundle.md).
Only active when the bundle version setting is "latest". No grpc here.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Generic, TypeVar

from services.contract.bundle import Bundle, resolve_bundle_dir
from services.contract.errors import BundleError, VersionNotServed
from services.contract.features import FeatureSpec
from services.contract.verify import read_latest, validate_bundle
from services.platform import heap
from services.platform.config import BundleSettings, Env, env_float

log = logging.getLogger(__name__)

T = TypeVar("T")

BUILD_THREAD_NICE = 10  # the building thread yields the CPU to the threads serving requests
BUILD_SWITCH_INTERVAL_S = 0.001  # while building: the event loop gets the GIL back sooner


@dataclass(frozen=True)
class ReloadSettings:
    """RECSERVE_RELOAD_INTERVAL_S (5; 0 = off) and RECSERVE_RELOAD_GRACE_S (30): how long the
    previous version stays loaded after a switch."""

    interval_s: float = 5.0
    grace_s: float = 30.0

    @classmethod
    def from_env(cls, env: Env | None = None) -> ReloadSettings:
        return cls(
            interval_s=env_float(
                "RECSERVE_RELOAD_INTERVAL_S", 5.0, min_value=0.0, max_value=3600.0, env=env
            ),
            grace_s=env_float(
                "RECSERVE_RELOAD_GRACE_S", 30.0, min_value=0.0, max_value=86_400.0, env=env
            ),
        )

    def active_for(self, bundle: BundleSettings) -> bool:
        return self.interval_s > 0 and bundle.version == "latest"


# --- the swap ----------------------------------------------------------------------------------


class ModelHolder(Generic[T]):
    """The live domain object of one service plus, for a grace period, the previous one.

    `current` is one attribute read; `swap` is one assignment (atomic under the GIL, and on the
    event loop nothing interleaves with it). `on_retire(obj)` runs when a previous object leaves
    the grace window (e.g. to close a batcher)."""

    def __init__(
        self,
        current: T,
        version: str,
        *,
        grace_s: float = 30.0,
        on_retire: Callable[[T], Awaitable[None] | None] | None = None,
    ) -> None:
        self._live: tuple[str, T] = (version, current)
        self._previous: tuple[str, T, float] | None = None  # (version, object, retire at)
        self.grace_s = grace_s
        self.on_retire = on_retire

    @property
    def current(self) -> T:
        return self._live[1]

    @property
    def version(self) -> str:
        return self._live[0]

    @property
    def live(self) -> tuple[str, T]:
        """(version, object), read together."""
        return self._live

    def get(self, version: str) -> T | None:
        """The object serving `version`: the current one, or the previous one within its grace."""
        found = self.resolve(version)
        return None if found is None else found[1]

    def resolve(self, version: str) -> tuple[str, T] | None:
        """(version, object) for `version` ("" = current), or None when it is not held."""
        live = self._live
        if not version or version == live[0]:
            return live
        prev = self._previous
        if prev is not None and prev[0] == version and time.monotonic() < prev[2]:
            return prev[0], prev[1]
        return None

    @property
    def versions(self) -> tuple[str, ...]:
        """The versions held now: the current one first, then the previous one in its grace."""
        prev = self._previous
        if prev is not None and time.monotonic() < prev[2]:
            return self._live[0], prev[0]
        return (self._live[0],)

    def serve(self, version: str) -> tuple[str, T]:
        """(version, object) for a request pinned to `version` ("" = current); VersionNotServed
        (FAILED_PRECONDITION, naming the versions held) when it is not held."""
        found = self.resolve(version)
        if found is None:
            raise VersionNotServed(version, self.versions)
        return found

    def swap(self, version: str, obj: T) -> T:
        """Make `obj` current; returns the object it replaced (kept for the grace period)."""
        old_version, old = self._live
        self._retire_previous()
        self._previous = (old_version, old, time.monotonic() + self.grace_s)
        self._live = (version, obj)
        return old

    def expire(self, now: float | None = None) -> None:
        """Drop the previous object when its grace period is over."""
        retire_at = self._previous[2] if self._previous is not None else None
        if retire_at is not None and (now if now is not None else time.monotonic()) >= retire_at:
            self._retire_previous()  # (no reference to the old object kept here: it can go)

    def _retire_previous(self) -> None:
        prev, self._previous = self._previous, None
        if prev is None:
            return
        old = prev[1]
        del prev
        result = self.on_retire(old) if self.on_retire is not None else None
        del old
        # The old object was frozen with the heap (services.platform.heap): thaw and collect,
        # so its reference cycles are freed, once its retirement is done.
        if asyncio.iscoroutine(result):
            task = asyncio.get_running_loop().create_task(result)
            task.add_done_callback(lambda _: heap.refreeze())
        else:
            heap.refreeze()


class BundleWatcher(Generic[T]):
    """Polls artifacts/LATEST; on a new version: validate + build in a thread, then (on the event
    loop) `adopt(old, new)` and swap. Counters: reloads, refusals; last_refusal says why."""

    def __init__(
        self,
        bundle: BundleSettings,
        holder: ModelHolder[T],
        build: Callable[[Bundle], T],
        *,
        reload: ReloadSettings,
        name: str,
        expected_spec: FeatureSpec | None = None,
        adopt: Callable[[T, T], None] | None = None,
    ) -> None:
        self.artifacts = Path(bundle.artifacts)
        self.holder = holder
        self.build = build
        self.interval_s = reload.interval_s
        self.name = name
        self.expected_spec = expected_spec
        self.adopt = adopt
        self.reloads = 0
        self.refusals = 0
        self.last_refusal: str | None = None
        self.last_switch_s: float | None = None  # LATEST seen changed -> swapped
        self._refused: str | None = None  # version refused last; retried when LATEST moves
        self._task: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="bundle-reload", initializer=_lower_priority
        )

    def start(self) -> None:
        if self.interval_s > 0 and self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())
            log.info("%s: watching %s every %.2fs", self.name, self.artifacts, self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check_now()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let the watcher die; the old model keeps serving
                log.exception("%s: reload check failed", self.name)

    async def check_now(self) -> bool:
        """One poll. True when a new version was swapped in."""
        self.holder.expire()
        wanted = read_latest(self.artifacts)
        if wanted is None or wanted == self.holder.version or wanted == self._refused:
            self._refused = None if wanted == self.holder.version else self._refused
            return False
        started = time.monotonic()
        try:
            loop = asyncio.get_running_loop()
            bundle, obj = await loop.run_in_executor(self._executor, self._load, wanted)
            if self.adopt is not None:
                self.adopt(self.holder.current, obj)  # on the loop: no request interleaves
        except Exception as exc:  # BundleError, or any failure to build: refuse
            self._refuse(wanted, exc)
            return False
        old_version = self.holder.version
        self.holder.swap(bundle.version, obj)
        self.reloads += 1
        self._refused = None
        self.last_switch_s = time.monotonic() - started
        log.info(
            "%s: switched bundle %s -> %s in %.2fs (reloads=%d refusals=%d)",
            self.name, old_version, bundle.version, self.last_switch_s,
            self.reloads, self.refusals,
        )  # fmt: skip
        return True

    def _load(self, version: str) -> tuple[Bundle, T]:
        """In the reload thread: validate, build, warm. The GIL switch interval is shortened
        meanwhile so requests on the event loop do not queue behind the build's Python code."""
        interval = sys.getswitchinterval()
        sys.setswitchinterval(min(interval, BUILD_SWITCH_INTERVAL_S))
        try:
            root = resolve_bundle_dir(self.artifacts, version)
            bundle = validate_bundle(root, self.expected_spec)
            if bundle.version != version:
                raise BundleError(f"directory {version} holds bundle {bundle.version}")
            return bundle, self.build(bundle)
        finally:
            sys.setswitchinterval(interval)

    def _refuse(self, version: str, exc: Exception) -> None:
        self.refusals += 1
        self._refused = version
        self.last_refusal = f"{type(exc).__name__}: {exc}"
        log.error(
            "%s: refused bundle %s (still serving %s; refusals=%d): %s",
            self.name, version, self.holder.version, self.refusals, self.last_refusal,
        )  # fmt: skip


def _lower_priority() -> None:
    """Linux nice values are per thread: the reload thread gets less CPU than the servers'."""
    with contextlib.suppress(OSError, AttributeError):
        tid = threading.get_native_id()
        os.setpriority(
            os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + BUILD_THREAD_NICE
        )


def make_watcher(
    bundle_settings: BundleSettings,
    reload: ReloadSettings,
    holder: ModelHolder[T],
    build: Callable[[Bundle], T],
    *,
    name: str,
    expected_spec: FeatureSpec | None,
    adopt: Callable[[T, T], None] | None = None,
) -> BundleWatcher[T] | None:
    """A started watcher when reload is on for these settings (version "latest"), else None.
    Must be called on the running event loop."""
    if not reload.active_for(bundle_settings):
        return None
    watcher = BundleWatcher(
        bundle_settings, holder, build,
        reload=reload, name=name, expected_spec=expected_spec, adopt=adopt,
    )  # fmt: skip
    watcher.start()
    return watcher


def as_holder(obj: T | ModelHolder[T], version: str) -> ModelHolder[T]:
    """Servicers take either a domain object (fixed for the process) or a ModelHolder."""
    return obj if isinstance(obj, ModelHolder) else ModelHolder(obj, version)
