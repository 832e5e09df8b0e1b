"""`recserve bundle list|publish|rollback` (services.contract.publish): LATEST switched atomically
only after validation, HISTORY appended, rollback one command."""

from __future__ import annotations

from pathlib import Path

import pytest

from recserve.cli import main
from services.contract.errors import BundleError
from services.contract.publish import HISTORY_FILE, history, previous_version, publish, rollback
from services.contract.verify import read_latest
from tests.services.reload_helpers import clone, perturb_onnx, point_latest


@pytest.fixture
def artifacts(tiny_bundle: Path, tmp_path: Path) -> Path:
    root = tmp_path / "artifacts"
    root.mkdir()
    clone(tiny_bundle, root, "v1")
    point_latest(root, "v1")
    return root


@pytest.fixture
def outside(tiny_bundle: Path, tmp_path: Path) -> Path:
    """A second valid bundle, v2, outside the artifacts directory (where training put it)."""
    staging = tmp_path / "elsewhere"
    staging.mkdir()
    return clone(tiny_bundle, staging, "v2")


def test_publish_copies_validates_and_switches(artifacts: Path, outside: Path) -> None:
    bundle = publish(artifacts, outside)
    assert bundle.version == "v2" and bundle.root == artifacts / "v2"
    assert (artifacts / "LATEST").read_text() == "v2\n"
    assert history(artifacts) == ["v1", "v2"]  # v1 was live before anyone used publish
    lines = (artifacts / HISTORY_FILE).read_text().splitlines()
    assert [line.split("\t")[1] for line in lines] == ["initial", "publish"]
    assert not [p for p in artifacts.iterdir() if p.name.startswith(".")]  # no temp leftovers


def test_rollback_goes_back_and_forth(artifacts: Path, outside: Path) -> None:
    publish(artifacts, outside)
    assert previous_version(artifacts) == "v1"
    assert rollback(artifacts).version == "v1" and read_latest(artifacts) == "v1"
    assert rollback(artifacts).version == "v2"  # a rollback can itself be undone
    assert rollback(artifacts, to="v1").version == "v1"
    assert history(artifacts) == ["v1", "v2", "v1", "v2", "v1"]


def test_a_bundle_failing_validation_is_not_published(artifacts: Path, tmp_path: Path) -> None:
    staging = tmp_path / "bad"
    staging.mkdir()
    bad = clone(artifacts / "v1", staging, "v2", perturb_onnx)
    with pytest.raises(BundleError, match="parity"):
        publish(artifacts, bad)
    assert read_latest(artifacts) == "v1"
    assert not (artifacts / "v2").exists()
    assert not [p for p in artifacts.iterdir() if p.name.startswith(".")]
    # already inside artifacts/: refused as well, LATEST untouched
    clone(artifacts / "v1", artifacts, "v3", perturb_onnx)
    with pytest.raises(BundleError, match="parity"):
        publish(artifacts, artifacts / "v3")
    assert read_latest(artifacts) == "v1"


def test_rollback_without_history_uses_the_older_bundle(artifacts: Path) -> None:
    with pytest.raises(BundleError, match="nothing to roll back"):
        rollback(artifacts)
    clone(artifacts / "v1", artifacts, "v0")
    assert rollback(artifacts, to="v0").version == "v0"
    with pytest.raises(BundleError, match="no bundle"):
        rollback(artifacts, to="v9")


def test_cli_bundle_commands(artifacts: Path, outside: Path, capsys) -> None:
    base = ["bundle", "--artifacts", str(artifacts)]
    assert main([*base, "publish", str(outside)]) == 0
    assert "published v2" in capsys.readouterr().out
    assert main([*base, "list"]) == 0
    listing = capsys.readouterr().out
    assert "v1" in listing and any(line.split()[:2] == ["*", "v2"] for line in listing.splitlines())
    assert main([*base, "rollback"]) == 0
    assert "rolled back to v1" in capsys.readouterr().out
    assert main([*base, "rollback", "--to", "nope"]) == 1
    assert "refused" in capsys.readouterr().err
    assert read_latest(artifacts) == "v1"
