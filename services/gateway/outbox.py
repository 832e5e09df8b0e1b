"""Feedback while the feature service cannot be reached: hold the events, re-send them in order.

Feedback is a write (ApplyEvents appends to the user's history), so it is never retried blindly:
a call that broke after the feature service applied it would apply it twice. Only events whose
call provably never left the gateway (`CircuitOpen`: the breaker refused it; `NotSent`: the
connection was refused) are held, in a bounded FIFO, and re-sent by one background task once
the service answers again. While events are held, new feedback queues behind them, so the
service sees every user's events in the order the gateway accepted them.

The client gets `accepted = len(events)` for held events (accepted for delivery, as a queue
would say); the spool is per gateway process and lost when the gateway stops. A full spool
answers UNAVAILABLE, as before. Every held request counts in
recserve_fallbacks_total{stage="feedback", reason="spooled"}; events dropped on an ambiguous
re-send failure count as reason="dropped".
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence

from services.contract.errors import RecserveError, Unavailable
from services.contract.types import Event
from services.gateway.resilience import CircuitOpen, NotSent
from services.platform import metrics

log = logging.getLogger(__name__)
Apply = Callable[[Sequence[Event]], Awaitable[int]]


class FeedbackSpool:
    def __init__(self, apply: Apply, capacity: int, batch: int, retry_s: float = 0.2) -> None:
        self._apply = apply
        self.capacity = capacity
        self.batch = max(1, batch)
        self.retry_s = retry_s
        self._events: deque[Event] = deque()
        self._task: asyncio.Task | None = None

    def __len__(self) -> int:
        return len(self._events)

    async def submit(self, events: Sequence[Event]) -> int:
        """Apply now, or hold the events when the service provably did not get them."""
        if not self._events:
            try:
                return await self._apply(events)
            except (CircuitOpen, NotSent):
                if self.capacity == 0:
                    raise
        if len(self._events) + len(events) > self.capacity:
            raise Unavailable("feature service unreachable and the feedback spool is full")
        self._events.extend(events)
        metrics.FALLBACKS.labels("feedback", "spooled").inc()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._drain())
        return len(events)

    async def _drain(self) -> None:
        while self._events:
            batch = list(itertools.islice(self._events, self.batch))
            try:
                await self._apply(batch)
            except (CircuitOpen, NotSent):
                await asyncio.sleep(self.retry_s)  # still unreachable: try again later
                continue
            except RecserveError as exc:
                # Unavailable mid-call or a deadline: it may have been applied; re-sending could
                # apply it twice, so it is dropped (and counted). A rejection is dropped too.
                metrics.FALLBACKS.labels("feedback", "dropped").inc(len(batch))
                log.warning("dropped %d held feedback events: %s", len(batch), exc)
            for _ in batch:
                self._events.popleft()
        log.info("feedback spool drained")

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
