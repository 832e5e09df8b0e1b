"""Embedded mode: concurrent Recommend requests share one ranking call.

The embedded gateway runs every stage inline on its event loop. Under load several requests
are in flight at once, each reaching the ranker on its own; one ONNX Runtime call over B users
costs much less than B calls (python -m bench: `rank_200_batch_8` per request vs `rank_200`).

No request waits for company that is not coming. The first request to reach the ranker leads a
batch: while other callbacks are ready to run on the loop (other requests on their way through
features and retrieval, new calls arriving), it yields to them, at most `max_yields` loop
iterations, and every request that reaches the ranker meanwhile joins its batch. With nothing
else ready (one call in flight) it scores at once, alone, as before: no extra loop iteration,
no future, no stacking of inputs.

Requests of one batch are of one bundle version (each EmbeddedStages holds one bundle). A bad
request fails alone (validated before it joins); a failing ONNX Runtime call fails every request
of its batch; a cancelled leader still scores its followers; a cancelled follower's result is
dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import numpy as np

from services.contract.types import RankScores, UserState
from services.platform import metrics

# (prepared request, its rate_top_k, the follower's future; None for the leader)
_Entry = tuple[tuple[dict, np.ndarray], int, "asyncio.Future[RankScores] | None"]


def _others_ready(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether callbacks other than the current task's are queued on the loop (asyncio's base
    event loop keeps them in `_ready`; an unknown loop counts as busy)."""
    ready = getattr(loop, "_ready", None)
    return True if ready is None else len(ready) > 0


class RankBatching:
    """Merges the rank calls of concurrent requests (see the module docstring). `ranker`:
    services.ranking.ranker.OnnxRanker (prepare, rank_one, rank_prepared)."""

    def __init__(self, ranker: Any, *, max_batch: int = 16, max_yields: int = 4) -> None:
        if max_batch < 1 or max_yields < 0:
            raise ValueError("max_batch >= 1 and max_yields >= 0")
        self.ranker = ranker
        self.max_batch = max_batch
        self.max_yields = max_yields
        self._open: list[_Entry] | None = None  # the batch a leader is gathering
        self.calls = 0  # ranker calls made
        self.requests = 0  # requests scored

    async def rank(
        self, user: UserState, item_indices: np.ndarray, rate_top_k: int = 0
    ) -> RankScores:
        prepared = self.ranker.prepare(user, item_indices)  # InvalidArgument: this one only
        loop = asyncio.get_running_loop()
        batch = self._open
        if batch is not None and len(batch) < self.max_batch:
            future: asyncio.Future[RankScores] = loop.create_future()
            batch.append((prepared, int(rate_top_k), future))
            return await future
        if self.max_batch == 1 or not _others_ready(loop):
            return self._alone(prepared, rate_top_k)
        return await self._lead(loop, prepared, int(rate_top_k))

    def _alone(self, prepared: tuple[dict, np.ndarray], rate_top_k: int) -> RankScores:
        metrics.RANKING_BATCH_SIZE.observe(1)
        self.calls += 1
        self.requests += 1
        return self.ranker.rank_one(prepared, rate_top_k)

    async def _lead(
        self, loop: asyncio.AbstractEventLoop, prepared: tuple[dict, np.ndarray], rate_top_k: int
    ) -> RankScores:
        batch: list[_Entry] = [(prepared, rate_top_k, None)]
        self._open = batch
        try:
            for _ in range(self.max_yields):
                await asyncio.sleep(0)  # the ready callbacks run; their rank calls join
                if len(batch) >= self.max_batch or not _others_ready(loop):
                    break
        except asyncio.CancelledError:
            self._close(batch)
            if len(batch) > 1:  # the followers still get their answers (or the error)
                with contextlib.suppress(Exception):
                    self._score(batch[1:])
            raise
        self._close(batch)
        return self._score(batch)

    def _close(self, batch: list[_Entry]) -> None:
        if self._open is batch:
            self._open = None

    def _score(self, batch: list[_Entry]) -> RankScores:
        """Scores the batch in one ranker call; sets each follower's future and returns the
        first entry's result (the leader's)."""
        metrics.RANKING_BATCH_SIZE.observe(len(batch))
        self.calls += 1
        self.requests += len(batch)
        try:
            if len(batch) == 1:
                results = [self.ranker.rank_one(batch[0][0], batch[0][1])]
            else:
                results = self.ranker.rank_prepared(
                    [p for p, _, _ in batch], [k for _, k, _ in batch]
                )
        except Exception as exc:
            for _, _, future in batch:
                if future is not None and not future.done():
                    future.set_exception(exc)
            raise
        for (_, _, future), result in zip(batch, results, strict=True):
            if future is not None and not future.done():
                future.set_result(result)
        return results[0]
