"""How the gateway protects itself from a backend that is down or slow (no grpc here).

- `CircuitBreaker`: closed → open after `failures` consecutive failures, or when the failure
  ratio over a sliding time window (at least `min_calls` calls) reaches `failure_ratio`; open
  fails every call fast for `cooldown_s`; then half-open lets at most `probes` trial calls
  through at a time: `probes` successes close it, one failure opens it again.
- `RetryPolicy`: bounded attempts, exponential backoff with full jitter (sleep uniform in
  [0, min(max, base * 2^n)]), retries only retryable failures (`Unavailable` that is not a
  deadline or an open circuit; never InvalidArgument / NotFound), and never sleeps past the
  stage's remaining deadline.
- `StageGuard`: one backend's breaker + retry policy + deadline around an `attempt(timeout_s)`
  coroutine factory; the remote stages (services.gateway.stages.remote) call through it.
- `request_budget`: a whole request's deadline (a context variable): stage calls inside it get
  at most what is left of it.

Writes that are not idempotent (ApplyEvents, i.e. Feedback) are called with idempotent=False
and never retried: a connection that breaks after the backend applied the events would apply
them twice. The gateway's feedback spool (services.gateway.outbox) only re-sends events whose
earlier try was never sent (`NotSent`, `CircuitOpen`).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import random
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TypeVar

from services.contract.errors import DeadlineExceeded, Unavailable, WrongVersion

T = TypeVar("T")
Clock = Callable[[], float]


class CircuitOpen(Unavailable):
    """The backend's breaker is open: the call was not sent (the caller degrades at once)."""


class NotSent(Unavailable):
    """The backend could not be reached at all (connection refused): nothing was delivered."""


class State(enum.IntEnum):
    """Values are what the recserve_circuit_state gauge reports."""

    CLOSED = 0
    HALF_OPEN = 1
    OPEN = 2


@dataclass(frozen=True)
class BreakerSettings:
    failures: int = 5  # consecutive failures that open the circuit
    failure_ratio: float = 0.5  # ... or this failure ratio over the window
    window_s: float = 10.0
    min_calls: int = 20  # the ratio only counts with at least this many calls in the window
    cooldown_s: float = 1.0  # open this long before half-open
    probes: int = 2  # half-open: concurrent trial calls, and successes needed to close

    def __post_init__(self) -> None:
        if self.failures < 1 or self.min_calls < 1 or self.probes < 1:
            raise ValueError("failures, min_calls and probes must be >= 1")
        if not 0.0 < self.failure_ratio <= 1.0:
            raise ValueError("failure_ratio must be in (0, 1]")
        if self.window_s <= 0 or self.cooldown_s < 0:
            raise ValueError("window_s must be > 0 and cooldown_s >= 0")


_BUCKETS = 10


class CircuitBreaker:
    """Thread-safe (one lock, never held across an await), so also safe for asyncio tasks."""

    def __init__(
        self,
        name: str,
        settings: BreakerSettings = BreakerSettings(),
        *,
        clock: Clock = time.monotonic,
        on_change: Callable[[str, State], None] | None = None,
    ) -> None:
        self.name = name
        self.settings = settings
        self._clock = clock
        self._on_change = on_change
        self._lock = threading.Lock()
        self._state = State.CLOSED
        self._opened_at = 0.0
        self._consecutive = 0
        self._probes_in_flight = 0
        self._probe_successes = 0
        self._bucket_s = settings.window_s / _BUCKETS
        self._buckets: list[list[int]] = [[-1, 0, 0] for _ in range(_BUCKETS)]  # id, n, failed

    @property
    def state(self) -> State:
        with self._lock:
            self._maybe_half_open(self._clock())
            return self._state

    def allow(self) -> bool:
        """May a call go out now? A True in half-open reserves a probe: record() releases it."""
        with self._lock:
            self._maybe_half_open(self._clock())
            if self._state is State.CLOSED:
                return True
            if self._state is State.HALF_OPEN and self._probes_in_flight < self.settings.probes:
                self._probes_in_flight += 1
                return True
            return False

    def record(self, success: bool) -> None:
        """The outcome of a call that allow() let through."""
        changed: State | None = None
        with self._lock:
            now = self._clock()
            if self._state is State.HALF_OPEN:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)
                if not success:
                    changed = self._open(now)
                else:
                    self._probe_successes += 1
                    if self._probe_successes >= self.settings.probes:
                        changed = self._close()
            elif self._state is State.CLOSED:
                self._count(now, success)
                self._consecutive = 0 if success else self._consecutive + 1
                if not success and self._should_open(now):
                    changed = self._open(now)
            # OPEN: a straggler allowed before the circuit opened; its outcome changes nothing.
        if changed is not None and self._on_change is not None:
            self._on_change(self.name, changed)

    def release(self) -> None:
        """A call that allow() let through ended without an outcome (cancelled)."""
        with self._lock:
            if self._state is State.HALF_OPEN:
                self._probes_in_flight = max(0, self._probes_in_flight - 1)

    # --- internals, called with the lock held ------------------------------------------------

    def _maybe_half_open(self, now: float) -> None:
        if self._state is State.OPEN and now - self._opened_at >= self.settings.cooldown_s:
            self._state = State.HALF_OPEN
            self._probes_in_flight = 0
            self._probe_successes = 0
            if self._on_change is not None:
                self._on_change(self.name, State.HALF_OPEN)

    def _should_open(self, now: float) -> bool:
        if self._consecutive >= self.settings.failures:
            return True
        n, failed = self._window(now)
        return n >= self.settings.min_calls and failed >= self.settings.failure_ratio * n

    def _open(self, now: float) -> State:
        self._state = State.OPEN
        self._opened_at = now
        return State.OPEN

    def _close(self) -> State:
        self._state = State.CLOSED
        self._consecutive = 0
        for bucket in self._buckets:
            bucket[:] = [-1, 0, 0]
        return State.CLOSED

    def _count(self, now: float, success: bool) -> None:
        bucket_id = int(now // self._bucket_s)
        bucket = self._buckets[bucket_id % _BUCKETS]
        if bucket[0] != bucket_id:
            bucket[:] = [bucket_id, 0, 0]
        bucket[1] += 1
        bucket[2] += not success

    def _window(self, now: float) -> tuple[int, int]:
        oldest = int(now // self._bucket_s) - _BUCKETS + 1
        live = [b for b in self._buckets if b[0] >= oldest]
        return sum(b[1] for b in live), sum(b[2] for b in live)


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3  # total tries, the first included (1 = no retry)
    base_s: float = 0.01
    max_s: float = 0.1

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.base_s < 0 or self.max_s < self.base_s:
            raise ValueError("need attempts >= 1 and 0 <= base_s <= max_s")

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Sleep before retry number `retry` (0-based): full jitter, U(0, min(max, base*2^n))."""
        cap = min(self.max_s, self.base_s * (2**retry))
        return (rng or random).uniform(0.0, cap)

    @staticmethod
    def retryable(exc: BaseException) -> bool:
        return isinstance(exc, Unavailable) and not isinstance(exc, DeadlineExceeded | CircuitOpen)


_request_deadline: ContextVar[float | None] = ContextVar("recserve_request_deadline", default=None)


@contextlib.contextmanager
def request_budget(seconds: float | None) -> Iterator[None]:
    """Within this block (and the tasks it starts), no stage call outlives `seconds` from now:
    each gets min(its own deadline, what is left of the request's), so a request whose stages
    are all slow still answers, degraded, before its caller gives up. None = no budget. A
    budget inside another never outlives it (a request retried on another bundle version
    shares the one budget)."""
    outer = _request_deadline.get()
    deadline = None if seconds is None else time.monotonic() + seconds
    if outer is not None:
        deadline = outer if deadline is None else min(outer, deadline)
    token = _request_deadline.set(deadline)
    try:
        yield
    finally:
        _request_deadline.reset(token)


class StageGuard:
    """One backend: breaker + retries inside the stage's deadline, with optional hooks for
    metrics (on_error(code), on_retry())."""

    def __init__(
        self,
        name: str,
        deadline_s: float,
        breaker: CircuitBreaker,
        retry: RetryPolicy = RetryPolicy(),
        *,
        clock: Clock = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        on_error: Callable[[str], None] | None = None,
        on_retry: Callable[[], None] | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.name = name
        self.deadline_s = deadline_s
        self.breaker = breaker
        self.retry = retry
        self._clock = clock
        self._sleep = sleep
        self._on_error = on_error
        self._on_retry = on_retry
        self._rng = rng

    async def run(self, attempt: Callable[[float], Awaitable[T]], *, idempotent: bool = True) -> T:
        """await attempt(timeout_s) until it succeeds, fails for good, or time runs out.

        Raises CircuitOpen without calling when the breaker refuses; DeadlineExceeded when the
        stage's deadline is spent; otherwise the last attempt's error."""
        own = self._clock() + self.deadline_s
        budget = _request_deadline.get()
        deadline = own if budget is None else min(own, budget)
        attempts = self.retry.attempts if idempotent else 1
        for n in range(attempts):
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise DeadlineExceeded(f"{self.name} service: deadline exceeded")
            if not self.breaker.allow():
                raise CircuitOpen(f"{self.name} service: circuit open")
            try:
                result = await attempt(remaining)
            except WrongVersion:  # answered: healthy; the pipeline retries elsewhere
                self.breaker.record(True)
                if self._on_error is not None:
                    self._on_error("FAILED_PRECONDITION")
                raise
            except Unavailable as exc:  # DeadlineExceeded, NotSent included
                if isinstance(exc, DeadlineExceeded) and deadline < own:
                    self.breaker.release()  # cut short by the request's budget, not its fault
                else:
                    self.breaker.record(False)
                if self._on_error is not None:
                    self._on_error(exc.code)
                delay = self.retry.backoff(n, self._rng)
                last = n == attempts - 1
                if last or not self.retry.retryable(exc) or self._clock() + delay >= deadline:
                    raise
                if self._on_retry is not None:
                    self._on_retry()
                await self._sleep(delay)
                continue
            except Exception as exc:
                # InvalidArgument / NotFound: the backend answered, so it is healthy.
                self.breaker.record(_answered(exc))
                if self._on_error is not None:
                    self._on_error(getattr(exc, "code", "UNKNOWN"))
                raise
            except BaseException:  # cancelled: says nothing about the backend
                self.breaker.release()
                raise
            self.breaker.record(True)
            return result
        raise AssertionError("unreachable")  # pragma: no cover


def _answered(exc: Exception) -> bool:
    """A domain error the backend itself sent back (its status), rather than a local crash."""
    return getattr(exc, "code", "INTERNAL") in ("INVALID_ARGUMENT", "NOT_FOUND")
