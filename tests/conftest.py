"""Session-wide fixtures: the real data sets and one tiny trained bundle shared by every test."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Before anything imports torch: waiting OpenMP threads sleep instead of spinning, so training
# on a busy 2-core box does not collapse (training.steps.runtime.prefer_passive_omp).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
# In-process embedded gateways built from the environment keep feedback in memory only: several
# per test process would contend for one event-log directory. Durable stores get a tmp dir from
# their own tests (tests/services/test_feature_eventlog*.py, test_feedback_durability.py).
os.environ.setdefault("RECSERVE_FEATURE_LOG_DIR", "none")
# gRPC's I/O stack, as the services choose it, before any test module imports grpc
# (services/platform/grpc_io.py).
import services  # noqa: F401
from training.data import InteractionData, fetch_all, load_cdnow, load_movielens

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """RECSERVE_DATA_DIR or <repo>/data, fetched and verified (no-op when already verified)."""
    path = Path(os.environ.get("RECSERVE_DATA_DIR", REPO / "data"))
    fetch_all(path)
    return path


@pytest.fixture(scope="session")
def movielens(data_dir: Path) -> InteractionData:
    return load_movielens(data_dir / "ml-100k")


@pytest.fixture(scope="session")
def cdnow(data_dir: Path) -> InteractionData:
    return load_cdnow(data_dir / "cdnow")


@pytest.fixture(scope="session")
def tiny_bundle(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete bundle trained with the tiny preset, built once per session; its directory.

    It lives in <tmp>/artifacts/<version>, with <tmp>/artifacts/LATEST pointing at it.
    """
    from training.pipeline import TrainConfig, build_bundle

    artifacts = tmp_path_factory.mktemp("tiny") / "artifacts"
    config = TrainConfig(data_dir=data_dir, artifacts_dir=artifacts, tiny=True, progress=False)
    return build_bundle(config)


@pytest.fixture(scope="session")
def ml_catalog(movielens: InteractionData):
    """MovieLens vocabularies, FeatureSpec and encoded side features (training.encode)."""
    from training.encode import build_catalog

    return build_catalog(movielens)


@pytest.fixture(scope="session")
def ml_split(movielens: InteractionData, ml_catalog):
    """(train, test) indexed events of the per-user temporal holdout, sorted by (user, time)."""
    from training.encode import index_events
    from training.split import temporal_split

    split = temporal_split(movielens.events)
    return index_events(ml_catalog, split.train), index_events(ml_catalog, split.test)
