"""Dynamic micro-batching: concurrent Rank requests merged into one ONNX Runtime call.

Each request is validated on arrival (a bad one fails alone), then queued. One worker takes up
to `max_batch` queued requests, waits at most `max_delay_s` for more when the batch is not full,
and scores them in a single session.run. With max_delay_s = 0 the batching is purely
opportunistic: no request ever waits for company.

Where session.run executes (`inline`):
- on a dedicated thread (inline=False): ONNX Runtime releases the GIL, so the event loop keeps
  receiving requests meanwhile. Right for CUDA (the run is mostly waiting on the device) and
  for machines with cores to spare.
- on the event loop itself (inline=True): no thread hand-off (executor submit, future
  callbacks, loop wake-up: about as much CPU as scoring 200 candidates on one CPU core). The
  batch is still formed from every request that arrived since the last run, since the loop
  handles all ready requests before the worker task runs again.

RankBatching is the inline batcher without a worker task, used on CPU (the ranking service
with max delay 0, and an embedded gateway's ranking stage): services.platform.loop_batching's
leader/follower scheme over the ranker. One call in flight is scored at once, alone; concurrent
requests that reach the ranker while the leader yields join its batch. A bad request fails
alone (validated before it joins); a failing ONNX Runtime call fails every request of its
batch; a cancelled leader still scores its followers; a cancelled follower's result is
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from services.contract.types import RankScores, UserState
from services.platform import metrics
from services.platform.loop_batching import LoopBatching
from services.ranking.added import RankerItems
from services.ranking.ranker import OnnxRanker


class RankBatcher:
    def __init__(
        self,
        ranker: OnnxRanker,
        *,
        max_batch: int = 16,
        max_delay_s: float = 0.0,
        inline: bool = False,
    ):
        if max_batch < 1 or max_delay_s < 0:
            raise ValueError("max_batch >= 1 and max_delay_s >= 0")
        self.ranker = ranker
        self.max_batch = max_batch
        self.max_delay_s = max_delay_s
        self.inline = inline
        # (prepared request, its rate_top_k, future, queued at)
        self._queue: list[tuple[tuple[dict, np.ndarray], int, asyncio.Future, float]] = []
        self._wake: asyncio.Event | None = None
        self._worker: asyncio.Task | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ort-rank")
        self.batches = 0  # ORT calls made
        self.requests = 0  # requests scored

    async def rank(
        self,
        user: UserState,
        item_indices: np.ndarray,
        rate_top_k: int = 0,
        query: np.ndarray | None = None,
    ) -> RankScores:
        """rate_top_k, query: OnnxRanker.rank's (each request of a batch keeps its own)."""
        prepared = self.ranker.prepare(user, item_indices, query)  # InvalidArgument: this one
        loop = asyncio.get_running_loop()
        if self._worker is None:
            self._wake = asyncio.Event()
            self._worker = loop.create_task(self._run())
        future = loop.create_future()
        self._queue.append((prepared, int(rate_top_k), future, time.perf_counter()))
        self._wake.set()
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                if len(self._queue) < self.max_batch and self.max_delay_s > 0:
                    await asyncio.sleep(self.max_delay_s)  # let concurrent requests join
                batch = self._queue[: self.max_batch]
                del self._queue[: self.max_batch]
                batch = [e for e in batch if not e[2].done()]  # cancelled: skip
                if not batch:
                    continue
                started = time.perf_counter()
                metrics.RANKING_BATCH_SIZE.observe(len(batch))
                for *_, queued in batch:
                    metrics.RANKING_QUEUE_DELAY.observe(started - queued)
                try:
                    prepared = [p for p, _, _, _ in batch]
                    rate = [k for _, k, _, _ in batch]
                    if self.inline:
                        scores = self.ranker.rank_prepared(prepared, rate)
                    else:
                        scores = await loop.run_in_executor(
                            self._executor, self.ranker.rank_prepared, prepared, rate
                        )
                except Exception as exc:  # handed to every waiting caller
                    for _, _, future, _ in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                self.batches += 1
                self.requests += len(batch)
                for (_, _, future, _), result in zip(batch, scores, strict=True):
                    if not future.done():
                        future.set_result(result)

    async def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
        self._executor.shutdown(wait=False)


def _observe_ranking(size: int, waits: list[float]) -> None:
    metrics.RANKING_BATCH_SIZE.observe(size)
    for wait in waits:
        metrics.RANKING_QUEUE_DELAY.observe(wait)


class RankBatching:
    """Merges the rank calls of concurrent requests without a worker task (see the module
    docstring; the leader/follower scheme is services.platform.loop_batching). `ranker`: an
    OnnxRanker (prepare, rank_one, rank_prepared)."""

    def __init__(self, ranker: Any, *, max_batch: int = 16, max_yields: int = 4) -> None:
        self.ranker = ranker
        self._batching: LoopBatching[tuple[tuple[dict, np.ndarray], int], RankScores] = (
            LoopBatching(
                lambda entry: ranker.rank_one(*entry),
                lambda entries: ranker.rank_prepared(
                    [prepared for prepared, _ in entries], [k for _, k in entries]
                ),
                max_batch=max_batch,
                max_yields=max_yields,
                observe=_observe_ranking,
            )
        )

    @property
    def max_batch(self) -> int:
        return self._batching.max_batch

    @property
    def calls(self) -> int:
        """Ranker calls made."""
        return self._batching.calls

    @property
    def requests(self) -> int:
        """Requests scored."""
        return self._batching.requests

    async def rank(
        self,
        user: UserState,
        item_indices: np.ndarray,
        rate_top_k: int = 0,
        query: np.ndarray | None = None,
    ) -> RankScores:
        prepared = self.ranker.prepare(user, item_indices, query)  # InvalidArgument: this one
        return await self._batching.run((prepared, int(rate_top_k)))

    async def close(self) -> None:
        """Nothing to stop: no worker, no thread (RankEngine.close calls it)."""


class RankEngine:
    """One bundle version's ranker and, when batching is on, its own batcher (requests of
    different versions are never merged into one ONNX Runtime call)."""

    def __init__(
        self,
        ranker: OnnxRanker,
        batcher: RankBatcher | RankBatching | None = None,
        items: RankerItems | None = None,
    ) -> None:
        """items: the ranker's items added at runtime (None: the service does not sync them;
        services.ranking.added)."""
        self.ranker = ranker
        self.batcher = batcher
        self.items = items

    async def rank(
        self,
        user: UserState,
        item_indices: np.ndarray,
        rate_top_k: int = 0,
        query: np.ndarray | None = None,
    ) -> RankScores:
        if self.batcher is not None:
            return await self.batcher.rank(user, item_indices, rate_top_k, query)
        return self.ranker.rank(user, item_indices, rate_top_k, query)

    async def close(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()
