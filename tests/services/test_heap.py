"""services.platform.heap: the serving heap frozen out of the cyclic GC, and a hot reload's old
object still collected."""

from __future__ import annotations

import gc
import weakref

import pytest

from services.platform import heap
from services.platform.reload import ModelHolder


class _Model:
    """An object in a reference cycle: only the cyclic GC frees it."""

    def __init__(self) -> None:
        self.me = self


@pytest.fixture
def thawed():
    yield
    gc.unfreeze()


def test_freeze_takes_the_live_heap_out_of_the_collections(thawed):
    frozen = heap.freeze()
    assert frozen > 1000 and gc.get_freeze_count() == frozen
    assert max(len(gc.get_objects(generation=g)) for g in range(3)) < frozen


def test_a_retired_model_in_a_cycle_is_collected_after_a_reload(thawed):
    old = _Model()
    gone = weakref.ref(old)
    holder = ModelHolder(old, "v1", grace_s=0.0)
    del old
    heap.freeze()  # as a serving process does: the model is frozen with the heap
    holder.swap("v2", _Model())
    holder.expire(now=float("inf"))  # the grace period is over: retired, heap refrozen
    assert gone() is None
    assert gc.get_freeze_count() > 0


def test_refreeze_does_nothing_where_nothing_was_frozen():
    gc.unfreeze()
    assert heap.refreeze() == 0
    assert gc.get_freeze_count() == 0


def test_frozen_block_thaws_after_unless_frozen_before(thawed):
    gc.unfreeze()
    with heap.frozen():
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    heap.freeze()
    before = gc.get_freeze_count()
    with heap.frozen():
        pass
    assert gc.get_freeze_count() == before
