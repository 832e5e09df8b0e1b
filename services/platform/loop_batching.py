"""Leader/follower batching on the event loop: concurrent calls of one model merged into one
call, without a worker task, a thread or a queue.

Code that runs its model calls inline on the event loop (an embedded gateway's stages, the
ranking service on CPU) reaches the model one request at a time. `LoopBatching.run(item)`:
the first call to arrive leads a batch. While other callbacks are ready to run on the loop
(other requests on their way, new calls arriving) it yields to them, at most `max_yields` loop
iterations, and every call reaching `run` meanwhile joins its batch; then one `many(items)`
call answers them all. With nothing else ready (one call in flight) the leader calls
`one(item)` at once: no extra loop iteration, no future, no stacking of inputs.

asyncio's loop says what is ready (its `_ready` list). uvloop does not: there a call that is
its server's only RPC in flight runs at once too (interceptors.rpcs_in_flight), and otherwise
the leader yields one iteration, and more while each brings company. A failing `many` fails
every call of its batch; a cancelled leader still answers its followers; a cancelled
follower's answer is dropped. Used by services.ranking.batcher.RankBatching (ranker calls) and
the embedded retrieval stage (user-tower calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

from services.platform.interceptors import rpcs_in_flight

P = TypeVar("P")  # what one call brings (validated already)
R = TypeVar("R")  # its answer

# (item, the follower's future (None for the leader), when it joined: perf_counter)
_Entry = tuple[P, "asyncio.Future[R] | None", float]


def others_ready(loop: asyncio.AbstractEventLoop) -> bool | None:
    """Whether callbacks other than the current task's are queued on the loop (asyncio's base
    event loop keeps them in `_ready`). A loop that does not say (uvloop): False inside a served
    RPC that is the process's only one (rpcs_in_flight: no other request can join, and a yield
    would only cost a loop iteration), else None (unknown)."""
    ready = getattr(loop, "_ready", None)
    if ready is not None:
        return len(ready) > 0
    return False if rpcs_in_flight() == 1 else None


class LoopBatching(Generic[P, R]):
    """one(item) -> answer; many(items) -> answers, aligned. `observe(size, waits)`: called
    once per model call with the batch size and each call's wait in seconds (metrics)."""

    def __init__(
        self,
        one: Callable[[P], R],
        many: Callable[[list[P]], Sequence[R]],
        *,
        max_batch: int = 16,
        max_yields: int = 4,
        observe: Callable[[int, list[float]], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_yields < 0:
            raise ValueError("max_batch >= 1 and max_yields >= 0")
        self.one, self.many = one, many
        self.max_batch = max_batch
        self.max_yields = max_yields
        self.observe = observe
        self._open: list[_Entry] | None = None  # the batch a leader is gathering
        self.calls = 0  # model calls made
        self.requests = 0  # calls answered

    async def run(self, item: P) -> R:
        loop = asyncio.get_running_loop()
        batch = self._open
        if batch is not None and len(batch) < self.max_batch:
            future: asyncio.Future[R] = loop.create_future()
            batch.append((item, future, time.perf_counter()))
            return await future
        if self.max_batch == 1 or others_ready(loop) is False:
            self._count(1, [0.0])
            return self.one(item)
        return await self._lead(loop, item)

    async def _lead(self, loop: asyncio.AbstractEventLoop, item: P) -> R:
        batch: list[_Entry] = [(item, None, time.perf_counter())]
        self._open = batch
        try:
            for _ in range(self.max_yields):
                size = len(batch)
                await asyncio.sleep(0)  # the ready callbacks run; their calls join
                if len(batch) >= self.max_batch:
                    break
                ready = others_ready(loop)
                # A loop that does not say what is ready (uvloop): go on while the last
                # iteration brought company (one iteration for a lone call).
                if ready is False or (ready is None and len(batch) == size):
                    break
        except asyncio.CancelledError:
            self._close(batch)
            if len(batch) > 1:  # the followers still get their answers (or the error)
                with contextlib.suppress(Exception):
                    self._answer(batch[1:])
            raise
        self._close(batch)
        return self._answer(batch)

    def _close(self, batch: list[_Entry]) -> None:
        if self._open is batch:
            self._open = None

    def _count(self, size: int, waits: list[float]) -> None:
        self.calls += 1
        self.requests += size
        if self.observe is not None:
            self.observe(size, waits)

    def _answer(self, batch: list[_Entry]) -> R:
        """One model call for the batch; sets each follower's future and returns the first
        entry's answer (the leader's)."""
        started = time.perf_counter()
        self._count(len(batch), [started - joined for *_, joined in batch])
        try:
            if len(batch) == 1:
                results: Sequence[R] = [self.one(batch[0][0])]
            else:
                results = self.many([entry[0] for entry in batch])
        except Exception as exc:
            for _, future, _ in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            raise
        for (_, future, _), result in zip(batch, results, strict=True):
            if future is not None and not future.done():
                future.set_result(result)
        return results[0]
