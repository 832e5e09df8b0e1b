"""services.platform.item_sync: paging until empty, applying the whole mirror once per round,
retrying after failures, starting afresh when the registry's change counter goes back."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from services.contract.added_items import AddedItem, NewItem
from services.contract.errors import ConfigError
from services.feature.registry import ItemRegistry
from services.platform.item_sync import ItemSync, sync_interval_from_env


class FakeFeature:
    """ListAddedItems over a real ItemRegistry; `fail` makes the next calls raise."""

    def __init__(self) -> None:
        self.registry = ItemRegistry()
        self.calls: list[tuple[int, int]] = []
        self.fail = 0

    async def list_items(self, after: int, limit: int) -> tuple[list[AddedItem], int]:
        self.calls.append((after, limit))
        if self.fail:
            self.fail -= 1
            raise ConnectionError("feature service down")
        return self.registry.changed_after(after, limit), self.registry.change


def test_a_round_pages_until_empty_and_applies_everything_in_ordinal_order():
    feature, applied = FakeFeature(), []
    feature.registry.upsert([NewItem(f"i{j}", title=f"T{j}") for j in range(5)])
    feature.registry.upsert([NewItem("i1", title="T1 again")])  # ordinal 2, latest change
    sync = ItemSync(feature.list_items, applied.append, page_size=2)

    assert asyncio.run(sync.pull()) == 5
    assert [a for a, _ in feature.calls] == [0, 3, 5, 6]  # i1 moved to change 6; then empty
    (entries,) = applied
    assert [e.ordinal for e in entries] == [1, 2, 3, 4, 5]
    assert entries[1].item.title == "T1 again" and sync.change == 6

    assert asyncio.run(sync.pull()) == 0 and len(applied) == 1  # nothing new: not applied
    sync.resync()
    asyncio.run(sync.pull())
    assert len(applied) == 2 and len(applied[1]) == 5  # asked for: applied again


def test_explicit_embeddings_travel_through_the_registry():
    feature, applied = FakeFeature(), []
    vector = np.linspace(-1, 1, 8).astype(np.float32)
    feature.registry.upsert([NewItem("v", embedding=vector)])
    feature.registry.upsert([NewItem("v")])  # a re-add without the vector keeps it
    asyncio.run(ItemSync(feature.list_items, applied.append).pull())
    (entry,) = applied[0]
    assert np.array_equal(entry.item.embedding, vector)
    assert np.array_equal(NewItem.from_json(entry.item.to_json()).embedding, vector)


def test_the_loop_backs_off_after_failures_and_catches_up():
    feature, applied = FakeFeature(), []
    feature.registry.upsert([NewItem("a", title="A")])
    feature.fail = 2

    async def scenario() -> ItemSync:
        sync = ItemSync(feature.list_items, applied.append, interval_s=0.01)
        sync.start()
        deadline = asyncio.get_running_loop().time() + 10
        while not applied and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        feature.registry.upsert([NewItem("b", title="B")])
        while len(applied) < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.01)
        await sync.stop()
        return sync

    sync = asyncio.run(asyncio.wait_for(scenario(), 20))
    assert [e.item.item_id for e in applied[-1]] == ["a", "b"] and sync.failures == 0
    assert len(feature.calls) >= 4  # two failures, then the successful rounds


def test_a_registry_that_lost_its_state_is_pulled_afresh():
    feature, applied = FakeFeature(), []
    feature.registry.upsert([NewItem(i, title=i) for i in ("a", "b", "c")])
    sync = ItemSync(feature.list_items, applied.append)
    asyncio.run(sync.pull())
    feature.registry = ItemRegistry()  # a feature service restarted without durability
    feature.registry.upsert([NewItem("z", title="Z")])
    asyncio.run(sync.pull())
    assert [e.item.item_id for e in applied[-1]] == ["z"] and sync.change == 1


def test_the_interval_setting_fails_fast():
    assert sync_interval_from_env({}) == 5.0
    assert sync_interval_from_env({"RECSERVE_ITEM_SYNC_S": "0"}) == 0.0
    for bad in ("-1", "soon", "100000"):
        with pytest.raises(ConfigError):
            sync_interval_from_env({"RECSERVE_ITEM_SYNC_S": bad})
