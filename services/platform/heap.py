"""The long-lived heap out of the cyclic garbage collector's way.

A service holds tens of thousands of objects for its whole life: the bundle's catalog, the
item table, vocabularies, the code. CPython's cyclic GC scans all of them at every full
(generation 2) collection, which runs now and then while serving and stops the event loop for
several milliseconds each time: a p99 of its own. `freeze()` (gc.freeze) moves every object
alive now to the permanent generation, which no collection scans; objects created while
serving are collected as before, and objects freed by their reference count are freed as
before.

Frozen objects in a reference cycle are never collected, so when a hot reload drops a bundle
(services.platform.reload.ModelHolder), `refreeze()` thaws the heap, collects it once (the old
bundle's cycles go) and freezes what is left.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator

log = logging.getLogger(__name__)


def freeze() -> int:
    """Collect once (start-up garbage is not kept), then freeze the heap; returns the number of
    objects frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()


def refreeze() -> int:
    """After objects that were frozen have been dropped: thaw, collect, freeze again. Nothing
    to do (0) in a process that never froze its heap."""
    if gc.get_freeze_count() == 0:
        return 0
    start = time.perf_counter()
    gc.unfreeze()
    frozen = freeze()
    log.info(
        "heap refrozen: %d objects out of the cyclic GC's scans (%.1f ms)",
        frozen,
        (time.perf_counter() - start) * 1e3,
    )
    return frozen


@contextlib.contextmanager
def frozen() -> Iterator[None]:
    """The heap frozen for the block (a load generator's run: its own pauses would show as the
    server's latency), thawed after unless it was frozen before."""
    was_frozen = gc.get_freeze_count() > 0
    if not was_frozen:
        freeze()
    try:
        yield
    finally:
        if not was_frozen:
            gc.unfreeze()
