"""Hot reload (services.platform.reload): validation, refusals, the swap, live-state carry-over
and one bundle version per request (serve or refuse)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from services.contract.bundle import Bundle
from services.contract.errors import (
    BundleError,
    ConfigError,
    FailedPrecondition,
    VersionNotServed,
    served_versions,
)
from services.contract.types import Event, EventKind
from services.contract.verify import PARITY_FILE, check_parity, validate_bundle
from services.feature.store import InMemoryFeatureStore
from services.platform.config import BundleSettings
from services.platform.reload import BundleWatcher, ModelHolder, ReloadSettings
from tests.services.reload_helpers import clone, perturb_onnx, point_latest


@pytest.fixture
def artifacts(tiny_bundle: Path, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    clone(tiny_bundle, root, "v1")
    point_latest(root, "v1")
    return root


def watcher_for(artifacts: Path) -> tuple[BundleWatcher[str], ModelHolder[str]]:
    """A watcher whose 'domain object' is the version string the build saw."""
    holder: ModelHolder[str] = ModelHolder("built-v1", "v1", grace_s=30.0)
    spec = Bundle.load(artifacts / "v1", verify=False).feature_spec
    watcher = BundleWatcher(
        BundleSettings(artifacts, "latest"),
        holder,
        lambda bundle: f"built-{bundle.version}",
        reload=ReloadSettings(interval_s=0.1),
        name="test",
        expected_spec=spec,
    )
    return watcher, holder


def test_a_valid_bundle_passes_every_check(artifacts: Path) -> None:
    bundle = validate_bundle(artifacts / "v1")
    assert PARITY_FILE in bundle.manifest["files"]
    error = check_parity(bundle)
    assert error is not None and error <= 1e-4


@pytest.mark.timeout(300)
def test_watcher_switches_to_a_new_version_and_keeps_the_previous_for_the_grace(artifacts):
    watcher, holder = watcher_for(artifacts)
    assert asyncio.run(watcher.check_now()) is False  # LATEST unchanged: nothing to do
    clone(artifacts / "v1", artifacts, "v2")
    point_latest(artifacts, "v2")
    assert asyncio.run(watcher.check_now()) is True
    assert (holder.version, holder.current) == ("v2", "built-v2")
    assert holder.get("v1") == "built-v1"  # in-flight / older-labelled requests still served
    assert watcher.reloads == 1 and watcher.refusals == 0
    assert watcher.last_switch_s is not None and watcher.last_switch_s < 60


def _corrupt_checksum(root: Path, manifest: dict) -> None:
    with open(root / "items.parquet", "r+b") as fh:
        fh.seek(20)
        byte = fh.read(1)
        fh.seek(20)
        fh.write(bytes([byte[0] ^ 0xFF]))


def _future_schema(root: Path, manifest: dict) -> None:
    manifest["schema_version"] = 99


def _longer_history(root: Path, manifest: dict) -> None:
    manifest["feature_spec"]["history_len"] += 1


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (_corrupt_checksum, "checksum mismatch"),
        (_future_schema, "schema_version"),
        (perturb_onnx, "parity failure in ranker.onnx"),
        (_longer_history, "feature_spec.history_len changed"),
    ],
    ids=["bad-checksum", "unsupported-schema", "onnx-parity", "feature-spec"],
)
def test_a_bad_bundle_is_refused_and_the_old_one_keeps_serving(artifacts, edit, reason):
    watcher, holder = watcher_for(artifacts)
    clone(artifacts / "v1", artifacts, "v2", edit)
    point_latest(artifacts, "v2")
    assert asyncio.run(watcher.check_now()) is False
    assert (holder.version, holder.current) == ("v1", "built-v1")
    assert watcher.refusals == 1 and watcher.reloads == 0
    assert reason in (watcher.last_refusal or "")
    # The refused version is not re-validated on every poll; a new publish is looked at.
    assert asyncio.run(watcher.check_now()) is False
    assert watcher.refusals == 1
    clone(artifacts / "v1", artifacts, "v3")
    point_latest(artifacts, "v3")
    assert asyncio.run(watcher.check_now()) is True
    assert holder.version == "v3"


def test_a_build_failure_is_a_refusal_too(artifacts):
    holder: ModelHolder[str] = ModelHolder("old", "v1")

    def broken(bundle: Bundle) -> str:
        raise RuntimeError("cannot allocate the index")

    watcher = BundleWatcher(
        BundleSettings(artifacts, "latest"), holder, broken,
        reload=ReloadSettings(interval_s=1.0), name="test",
    )  # fmt: skip
    clone(artifacts / "v1", artifacts, "v2")
    point_latest(artifacts, "v2")
    assert asyncio.run(watcher.check_now()) is False
    assert holder.current == "old" and "cannot allocate" in watcher.last_refusal


def test_a_bundle_without_parity_samples_is_accepted_with_a_warning(artifacts, caplog):
    def drop_parity(root: Path, manifest: dict) -> None:
        (root / PARITY_FILE).unlink()
        del manifest["files"][PARITY_FILE]

    root = clone(artifacts / "v1", artifacts, "old", drop_parity)
    assert check_parity(Bundle.load(root)) is None
    assert "parity self-check skipped" in caplog.text
    assert validate_bundle(root).version == "old"


@pytest.mark.timeout(300)
def test_the_polling_task_switches_by_itself(artifacts):
    watcher, holder = watcher_for(artifacts)

    async def scenario() -> None:
        watcher.start()
        clone(artifacts / "v1", artifacts, "v2")
        point_latest(artifacts, "v2")
        deadline = time.monotonic() + 30
        while holder.version != "v2" and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        await watcher.stop()

    asyncio.run(scenario())
    assert holder.version == "v2" and watcher.reloads == 1


def test_holder_grace_period_and_retirement() -> None:
    retired: list[str] = []
    holder = ModelHolder("a", "v1", grace_s=10.0, on_retire=retired.append)
    assert holder.swap("v2", "b") == "a"
    assert holder.get("v2") == "b" and holder.get("v1") == "a" and holder.get("") == "b"
    holder.expire(now=time.monotonic() + 11)
    assert holder.get("v1") is None and retired == ["a"]
    holder.swap("v3", "c")
    holder.swap("v4", "d")  # only one previous version is held: b leaves at once
    assert retired == ["a", "b"] and holder.resolve("v3") == ("v3", "c")
    assert holder.resolve("v2") is None


def test_reload_settings_from_env() -> None:
    assert ReloadSettings.from_env({}) == ReloadSettings(5.0, 30.0)
    off = ReloadSettings.from_env({"RECSERVE_RELOAD_INTERVAL_S": "0"})
    assert not off.active_for(BundleSettings(Path("a"), "latest"))
    on = ReloadSettings.from_env({"RECSERVE_RELOAD_INTERVAL_S": "0.5"})
    assert on.active_for(BundleSettings(Path("a"), "latest"))
    assert not on.active_for(BundleSettings(Path("a"), "20260101T000000Z"))  # pinned
    with pytest.raises(ConfigError, match="RECSERVE_RELOAD_INTERVAL_S"):
        ReloadSettings.from_env({"RECSERVE_RELOAD_INTERVAL_S": "-1"})


# --- one version per request ------------------------------------------------------------------


def test_holder_serves_the_pinned_version_or_refuses_naming_what_it_holds() -> None:
    holder = ModelHolder("model-a", "a", grace_s=30.0)
    holder.swap("b", "model-b")
    assert holder.serve("a") == ("a", "model-a")  # within the grace
    assert holder.serve("") == holder.serve("b") == ("b", "model-b")
    assert holder.versions == ("b", "a")
    with pytest.raises(VersionNotServed) as refused:
        holder.serve("c")
    assert isinstance(refused.value, FailedPrecondition) and refused.value.served == ("b", "a")
    assert served_versions(str(refused.value)) == ("b", "a")  # what a gRPC client reads back
    holder.expire(now=time.monotonic() + 31)
    with pytest.raises(VersionNotServed, match=r"versions served: b$"):
        holder.serve("a")
    assert served_versions("some other precondition") is None


def test_feature_store_keeps_live_state_across_a_reload(artifacts) -> None:
    bundle = Bundle.load(artifacts / "v1")
    old = InMemoryFeatureStore.from_bundle(bundle)
    item = old.catalog.vocab.id_of(5)
    old.apply_events([Event("brand-new-user", item, EventKind.VIEW, 86_400 * 20_000)])
    known = old.users.id_of(1)
    old.apply_events([Event(known, item, EventKind.CLICK, 86_400 * 20_001)])
    before = old.get_user(known)

    new = InMemoryFeatureStore.from_bundle(bundle)
    assert new.get_user("brand-new-user").event_count == 0
    new.adopt_live_state(old)
    carried = new.get_user("brand-new-user")
    assert carried.event_count == 1 and carried.history[0] == new.catalog.index(item)
    after = new.get_user(known)
    assert after.history.tolist() == before.history.tolist()
    assert after.event_count == before.event_count
    assert new.events_applied == 2
    # Events that reach the old store after the hand-over (a request pinned to the old
    # version, a re-sent spool) are encoded by id and applied to the new one: none is lost.
    other = old.catalog.vocab.id_of(7)
    old.apply_events([Event("brand-new-user", other, EventKind.VIEW, 86_400 * 20_002)])
    assert new.get_user("brand-new-user").history[0] == new.catalog.index(other)
    assert old.get_user("brand-new-user").event_count == 1  # the old one answers as it was
    assert old.latest() is new


def test_a_durable_feature_store_hands_its_log_to_the_new_bundle_store(
    artifacts: Path, tmp_path: Path
) -> None:
    """The durable store moves to a new bundle at a reload (state re-encoded by item id, its
    event log handed over): events logged after the swap, even through the old store, land in
    the new one, and its snapshot is in the new version, so a restart on it replays nothing
    twice and loses nothing."""
    from services.feature.config import DurabilitySettings
    from services.feature.eventlog import LogSettings
    from services.feature.snapshot import open_durable_store, read_snapshot

    bundle = Bundle.load(artifacts / "v1")
    settings = DurabilitySettings(LogSettings(tmp_path / "log"), snapshot_every=0)
    old, durability = open_durable_store(bundle, settings)
    assert durability is not None
    item, other = old.catalog.vocab.id_of(3), old.catalog.vocab.id_of(4)
    old.apply_events([Event("moving-user", item, EventKind.VIEW, 86_400 * 20_000)])
    new = InMemoryFeatureStore.from_bundle(bundle)
    new.adopt_live_state(old)
    old.apply_events([Event("moving-user", other, EventKind.CLICK, 86_400 * 20_001)])
    new.apply_events([Event("moving-user", item, EventKind.CLICK, 86_400 * 20_002)])
    user = new.get_user("moving-user")
    assert user.event_count == 3
    assert user.history[:2].tolist() == [new.catalog.index(item), new.catalog.index(other)]
    assert durability.store is new and new.event_log is not None
    durability.close()
    state, position = read_snapshot(tmp_path / "log", new.bundle_version)
    assert position == new.position and int(state["moving-user"][4][0]) == 3
    restarted, again = open_durable_store(bundle, settings)
    assert restarted.get_user("moving-user").event_count == 3
    assert again is not None
    again.close()


def test_validate_bundle_reports_a_missing_directory(tmp_path) -> None:
    with pytest.raises(BundleError):
        validate_bundle(tmp_path / "nothing-here")
