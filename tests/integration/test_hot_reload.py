"""Hot reload under load: the real service processes (embedded gateway, then the five-process
split stack) serve a tmp copy of the tiny bundle with RECSERVE_RELOAD_INTERVAL_S=0.5 while the
load-test harness sends an open-loop stream; a second bundle (trained with another seed, so its
scores differ) is published in the middle. Zero failed requests, responses report the new
version afterwards, and one rollback brings the old version back."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import pytest

from loadtest.runner import LoadSpec, TrafficConfig, run_async
from recserve.client import RecserveClient
from services.contract.publish import publish, rollback
from services.launcher import BACKENDS, Launcher

pytestmark = pytest.mark.slow

RATE = 40.0  # requests/s: moderate for a shared 2-core box running up to five servers
DURATION_S = 16.0
PUBLISH_AT_S = 5.0  # after the start of the load (warm-up included)


@pytest.fixture(scope="module")
def second_bundle(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny preset with seed 1 -> a bundle outside any served artifacts directory."""
    from training.pipeline import TrainConfig, build_bundle

    out = tmp_path_factory.mktemp("second") / "artifacts"
    config = TrainConfig(
        data_dir=data_dir, artifacts_dir=out, tiny=True, progress=False, seed=1, version="seed1"
    )
    return build_bundle(config)


@pytest.fixture
def artifacts(tiny_bundle: Path, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    shutil.copytree(tiny_bundle, root / tiny_bundle.name)
    (root / "LATEST").write_text(tiny_bundle.name + "\n")
    return root


def wait_for_version(client: RecserveClient, user: str, version: str, timeout: float) -> float:
    """Seconds until Recommend reports `version` (fails after timeout)."""
    start = time.monotonic()
    last = None
    while time.monotonic() - start < timeout:
        last = client.recommend(user, k=5).model_version
        if last == version:
            return time.monotonic() - start
        time.sleep(0.1)
    raise AssertionError(f"still serving {last!r}, not {version!r}, after {timeout}s")


def wait_for_logs(running: Launcher, needle: str, timeout: float) -> dict[str, str]:
    """Every process's log, once each holds `needle` (or the timeout passed)."""
    deadline = time.monotonic() + timeout
    while True:
        logs = {name: running.log_tail(name, lines=100_000) for name in running.names}
        if all(needle in text for text in logs.values()) or time.monotonic() > deadline:
            return logs
        time.sleep(0.2)


def run_switch(
    artifacts: Path, second: Path, mode: str, tmp_path: Path, durable: bool = False
) -> None:
    first = (artifacts / "LATEST").read_text().strip()
    env = {
        # durable: the feature store logs feedback; at a reload the new bundle's store takes
        # over its live state (re-encoded by item id) and its log. Otherwise none is logged.
        "RECSERVE_FEATURE_LOG_DIR": str(tmp_path / "feature-log") if durable else "none",
        "RECSERVE_RELOAD_INTERVAL_S": "0.5",
        "RECSERVE_RANKING_DEVICE": "cpu",
        # The gateway's per-backend deadlines (200-300 ms by default) are sized for a quiet box;
        # this one is shared, 2 cores for five servers, the load generator and other test runs.
        **{f"RECSERVE_{b.upper()}_DEADLINE_MS": "1500" for b in BACKENDS},
    }
    launcher = Launcher(artifacts, mode=mode, log_dir=tmp_path / "logs", env=env)
    with launcher as running, RecserveClient(running.gateway_target, timeout=10.0) as client:
        user = "196"
        before = client.recommend(user, k=10)
        assert before.model_version == first
        spec = LoadSpec(
            target=running.gateway_target, mode="open", rate=RATE,
            duration_s=DURATION_S, warmup_s=1.0, default_deadline_ms=3000.0,
        )  # fmt: skip
        switched: dict[str, float] = {}

        def publish_later() -> None:
            time.sleep(PUBLISH_AT_S)
            publish(artifacts, second)
            switched["published"] = time.monotonic()
            with RecserveClient(running.gateway_target, timeout=10.0) as probe:
                switched["switch_s"] = wait_for_version(probe, user, second.name, 60.0)

        publisher = threading.Thread(target=publish_later)
        publisher.start()
        result = asyncio.run(run_async(spec, TrafficConfig(bundle_dir=str(artifacts / first))))
        publisher.join(30)
        summary = result.summary()
        print(
            f"\nHOT_RELOAD mode={mode} rate={RATE}/s duration={DURATION_S}s "
            f"requests={summary['requests']} errors={summary['errors']} "
            f"status={summary['status']} p50={summary['latency_ms'].get('p50')}ms "
            f"p99={summary['latency_ms'].get('p99')}ms max={summary['latency_ms'].get('max')}ms "
            f"publish->new version served={switched.get('switch_s', float('nan')):.2f}s"
        )
        assert "published" in switched, "publish did not happen during the load"
        assert "switch_s" in switched, "the new version was never served"
        assert summary["requests"] >= 0.8 * RATE * DURATION_S
        assert summary["errors"] == 0, summary["status"]

        after = client.recommend(user, k=10)
        assert after.model_version == second.name  # switched, no restart
        assert not after.fallbacks
        old_scores = [it.score for it in before.items]
        new_scores = [it.score for it in after.items]
        assert old_scores != new_scores  # another seed: other scores

        rollback(artifacts)
        wait_for_version(client, user, first, timeout=30.0)
        back = client.recommend(user, k=10)
        assert not back.fallbacks and [it.item_id for it in back.items]
        logs = wait_for_logs(running, f"-> {first} in", timeout=30.0)
    # No stage degraded during either switch (a fallback would have hidden a failure), and
    # every process switched forward and back exactly once, refusing nothing.
    assert "degrading" not in logs["gateway"]
    for name, text in logs.items():
        assert text.count(f"-> {second.name} in") == 1, name
        assert text.count(f"-> {first} in") == 1, name
        assert "refused bundle" not in text, name


@pytest.mark.timeout(600)
def test_embedded_gateway_switches_under_load(artifacts, second_bundle, tmp_path):
    run_switch(artifacts, second_bundle, "embedded", tmp_path)


@pytest.mark.timeout(600)
def test_embedded_gateway_with_durable_feedback_switches_under_load(
    artifacts, second_bundle, tmp_path
):
    run_switch(artifacts, second_bundle, "embedded", tmp_path, durable=True)
    assert list((tmp_path / "feature-log").glob("*.log")), "feedback was logged"


@pytest.mark.timeout(600)
def test_split_stack_switches_under_load(artifacts, second_bundle, tmp_path):
    run_switch(artifacts, second_bundle, "split", tmp_path)


@pytest.mark.parametrize("mode", ["embedded", "split"])
def test_added_items_survive_a_hot_reload(artifacts, second_bundle, tmp_path, mode):
    """An item added by text (the tiny bundle's content encoder) before a bundle switch is
    still served after it, re-encoded by the new bundle's encoder and re-rowed for its n."""
    from recserve.v1 import common_pb2

    env = {
        "RECSERVE_FEATURE_LOG_DIR": str(tmp_path / "feature-log"),  # durable registry
        "RECSERVE_RELOAD_INTERVAL_S": "0.5",
        "RECSERVE_ITEM_SYNC_S": "0.5",
        "RECSERVE_RANKING_DEVICE": "cpu",
        **{f"RECSERVE_{b.upper()}_DEADLINE_MS": "3000" for b in BACKENDS},
    }
    launcher = Launcher(artifacts, mode=mode, log_dir=tmp_path / "logs", env=env)
    with launcher as running, RecserveClient(running.gateway_target, timeout=30.0) as client:
        item = common_pb2.NewItem(
            item_id="fresh-title", title="Space Station Rescue (1998)", tags=["Action", "Sci-Fi"]
        )
        (added,) = client.add_items([item]).items
        assert added.row > 0

        def served() -> list[str]:
            return [i.item_id for i in client.similar_items("fresh-title", k=5).items]

        assert len(served()) == 5
        publish(artifacts, second_bundle)
        wait_for_version(client, "196", second_bundle.name, 60.0)
        deadline = time.monotonic() + 30.0
        while True:  # the new version's retriever indexes the item right after the swap
            try:
                similar = served()
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        assert len(similar) == 5 and "fresh-title" not in similar
        (rating,) = client.predict_ratings("196", ["fresh-title"]).ratings
        assert 1.0 <= rating.rating <= 5.0
        assert client.add_items([item]).items[0].ordinal == added.ordinal  # same registry entry
