"""Score recserve itself: a bundle trained on exactly the evaluation's train events, asked the
way the services ask it.

    retrieval   feature store state → Retriever (user tower ONNX + FAISS), exclude seen, top k
    two_stage   retrieval top-N (N = the gateway's candidates, 200) → OnnxRanker P(interact)
    gateway     the answer of a running gateway (services.launcher, embedded mode) over gRPC

The feature store is built from the bundle's interactions.parquet (= the train events), so
"seen" is exactly the user's training items: full ranking over all items minus those.
"""

from __future__ import annotations

import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from services.contract.bundle import Bundle
from services.contract.types import FilterSpec, UserState
from services.feature.store import InMemoryFeatureStore
from services.ranking.ranker import OnnxRanker
from services.retrieval.retriever import Retriever
from training.data import InteractionData

CANDIDATES = 200


def train_bundle(
    train: pd.DataFrame,
    data: InteractionData,
    artifacts_dir: Path,
    version: str,
    *,
    data_dir: Path = Path("data"),
    tiny: bool = False,
    progress: bool = False,
    rating_only: bool = False,
    overrides: dict[str, Any] | None = None,
) -> Path:
    """Train every model on exactly `train` (no held-out events are shown to it) -> bundle dir.
    An existing bundle of that version is replaced. rating_only: train only the rating model
    (TrainConfig.rating_only), for rating cross-validation. overrides: other TrainConfig
    fields (the user-encoder ablation, training.evaluate.encoders)."""
    import shutil

    from training.pipeline import TrainConfig, build_bundle_from_events

    target = Path(artifacts_dir) / version
    if target.exists():
        shutil.rmtree(target)
    config = TrainConfig(
        data_dir=data_dir,
        artifacts_dir=Path(artifacts_dir),
        version=version,
        tiny=tiny,
        progress=progress,
        rating_only=rating_only,
        **(overrides or {}),
    )
    # The user-value model plays no part in these metrics; it learns from the same train events
    # as everything else (money or engagement, training.value_step.value_view).
    return build_bundle_from_events(train, data, config)


@dataclass
class OurModel:
    """The serving-side objects of one bundle, used in-process (CPU, one thread each)."""

    bundle: Bundle
    store: InMemoryFeatureStore
    retriever: Retriever
    ranker: OnnxRanker
    # user id -> when the evaluation asks for that user (unix s): the request_time of the
    # user's state, from which a tower that reads event times measures the history's ages
    request_times: dict[str, float] = field(default_factory=dict)

    @classmethod
    def load(cls, bundle_dir: Path, test: pd.DataFrame | None = None) -> OurModel:
        """test: the held-out events; each user is then asked at their first one (what
        training's examples do: a history's ages are taken at the next event), else at the
        wall clock."""
        bundle = Bundle.load(Path(bundle_dir))
        return cls(
            bundle,
            InMemoryFeatureStore.from_bundle(bundle),
            Retriever.from_bundle(bundle),
            OnnxRanker.from_bundle(bundle, prefer_gpu=False),
            request_times(test) if test is not None else {},
        )

    def user(self, user_id: str) -> UserState:
        state = self.store.get_user(str(user_id))
        when = self.request_times.get(str(user_id))
        return state if when is None else replace(state, request_time=when)

    def _ids(self, rows: np.ndarray) -> list[str]:
        return self.store.catalog.vocab.ids_of(np.asarray(rows, dtype=np.int64))

    def retrieve(
        self, user_ids: Sequence[str], k: int = 100, *, exclude_seen: bool = True
    ) -> dict[str, list[str]]:
        """Retrieval alone: the top k by the user tower, seen items excluded inside FAISS
        (unless not exclude_seen: a dataset whose items are bought again)."""
        filters = FilterSpec(exclude_seen=exclude_seen)
        out = {}
        for user_id in user_ids:
            user = self.user(user_id)
            if user.is_cold:
                out[str(user_id)] = self._popular(user, k, exclude_seen)
                continue
            found = self.retriever.retrieve(user, k, filters)
            out[str(user_id)] = self._ids(found.item_indices)
        return out

    def two_stage(
        self,
        user_ids: Sequence[str],
        k: int = 100,
        candidates: int = CANDIDATES,
        *,
        exclude_seen: bool = True,
    ) -> dict[str, list[str]]:
        """Retrieval top-N, re-ranked by the ranker's P(interact) (the gateway's order)."""
        filters = FilterSpec(exclude_seen=exclude_seen)
        out = {}
        for user_id in user_ids:
            user = self.user(user_id)
            if user.is_cold:
                out[str(user_id)] = self._popular(user, k, exclude_seen)
                continue
            found = self.retriever.retrieve(user, max(candidates, k), filters)
            scores = self.ranker.rank(user, found.item_indices).p_interact
            order = np.argsort(-scores, kind="stable")[:k]
            out[str(user_id)] = self._ids(found.item_indices[order])
        return out

    def _popular(self, user: UserState, k: int, exclude_seen: bool = True) -> list[str]:
        pop = self.store.catalog.popularity.astype(np.float64)
        pop[0] = -np.inf
        if exclude_seen:
            pop[user.seen] = -np.inf
        return self._ids(np.argsort(-pop, kind="stable")[:k])

    def predict(self, pairs: pd.DataFrame, batch: int = 1000) -> pd.DataFrame:
        """pairs (user_id, item_id) -> + columns p_positive, prediction (rating), with each user's
        serving-time state (history = their training events). Unknown items: NaN."""
        p_pos = np.full(len(pairs), np.nan)
        rating = np.full(len(pairs), np.nan)
        items = self.store.catalog.indices(pairs["item_id"].astype(str).tolist())
        for user_id, rows in pairs.groupby("user_id", sort=False).indices.items():
            user = self.user(str(user_id))
            rows = rows[items[rows] > 0]
            for start in range(0, len(rows), batch):
                chunk = rows[start : start + batch]
                scores = self.ranker.rank(user, items[chunk])
                p_pos[chunk], rating[chunk] = scores.p_positive, scores.rating
        return pairs.assign(p_positive=p_pos, prediction=rating)

    def tag_affinities(self, user_ids: Sequence[str]) -> dict[str, list[tuple[str, float]]]:
        """RecommendTags: every tag with its affinity, best first."""
        n_tags = len(self.retriever.index.tags)
        return {str(u): self.retriever.tag_affinities(self.user(u), n_tags) for u in user_ids}


def gateway_answers(
    bundle_dir: Path, user_ids: Sequence[str], k: int = 100, timeout: float = 120.0
) -> dict[str, list[str]]:
    """Start a gateway (embedded mode: one process with every stage) on this bundle and ask it
    Recommend(user, k, exclude_seen=True) for each user over gRPC."""
    from recserve.client import RecserveClient
    from services.launcher import Launcher

    bundle_dir = Path(bundle_dir)
    out: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="recserve-eval-") as logs:
        launcher = Launcher(
            bundle_dir.parent,
            bundle_dir.name,
            mode="embedded",
            log_dir=logs,
            env={"RECSERVE_RANKING_DEVICE": "cpu"},
        )
        launcher.start(timeout=timeout)
        try:
            with RecserveClient(launcher.gateway_target, timeout=30.0) as client:
                for user_id in user_ids:
                    reply = client.recommend(str(user_id), k=k, exclude_seen=True)
                    out[str(user_id)] = [item.item_id for item in reply.items]
        finally:
            launcher.stop()
    return out


def request_times(test: pd.DataFrame) -> dict[str, float]:
    """Held-out events -> {user id: the time of the user's first one} (OurModel.request_times)."""
    first = test.groupby(test["user_id"].astype(str))["timestamp"].min()
    return {str(u): float(t) for u, t in first.items()}
