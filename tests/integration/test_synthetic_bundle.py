"""The synthetic scale bundle (bench.synthetic_bundle) at a small size: a real bundle that the
services load unchanged, with an IVF index (flat threshold lowered) whose recorded nprobe and
recall hold on the served path, served end to end by an embedded gateway."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import faiss
import numpy as np
import pytest

from bench.synthetic_bundle import build_synthetic_bundle
from bench.synthetic_data import generate
from recserve.client import RecserveClient
from services.contract.bundle import REQUIRED_FILES, Bundle
from services.feature.store import InMemoryFeatureStore
from services.gateway.catalog import GatewayCatalog
from services.retrieval.retriever import Retriever
from training.export import QUERY_INPUT, RANKER_INPUTS, RANKER_OUTPUTS

N_ITEMS, N_USERS = 20_000, 5_000


@pytest.fixture(scope="module")
def bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """Overrides the integration `bundle`: start_embedded serves this one."""
    out = tmp_path_factory.mktemp("synthetic") / "artifacts"
    root = build_synthetic_bundle(
        out, N_ITEMS, N_USERS, flat_max_items=1000, value_from=tiny_bundle, progress=False
    )
    return Bundle.load(root)  # every checksum verified


@pytest.fixture(scope="module")
def store(bundle: Bundle) -> InMemoryFeatureStore:
    return InMemoryFeatureStore.from_bundle(bundle)


def test_generator_is_seeded() -> None:
    a, b = generate(500, 200, dim=8, seed=5), generate(500, 200, dim=8, seed=5)
    assert a.events.equals(b.events) and a.items.equals(b.items)
    np.testing.assert_array_equal(a.item_vectors, b.item_vectors)
    assert not generate(500, 200, dim=8, seed=6).events.equals(a.events)


def test_bundle_is_complete_with_the_serving_contract(bundle: Bundle) -> None:
    assert set(REQUIRED_FILES) <= set(bundle.manifest["files"])
    assert "parity.npz" in bundle.manifest["files"]
    ranker = bundle.manifest["models"]["ranker.onnx"]
    # the frozen retrieval score's query is an input (training.export.QueryGiven)
    assert [i["name"] for i in ranker["inputs"]] == [*RANKER_INPUTS, QUERY_INPUT]
    assert [o["name"] for o in ranker["outputs"]] == list(RANKER_OUTPUTS)
    assert all(m["parity_max_abs_error"] <= 1e-4 for m in bundle.manifest["models"].values())
    assert len(np.load(bundle.path("item_ids.npy"))) == N_ITEMS
    assert len(np.load(bundle.path("user_ids.npy"))) == N_USERS
    synthetic = bundle.manifest["synthetic"]
    assert synthetic["args"]["items"] == N_ITEMS and synthetic["peak_rss_mb"] > 0


def test_ivf_index_serves_the_recall_it_records(bundle: Bundle, store) -> None:
    info = bundle.manifest["index"]
    assert bundle.manifest["index_type"] == f"IDMap2,IVF{info['nlist']},Flat,IP"
    assert info["query_source"] == "user-tower outputs" and info["recall"] >= 0.95
    retriever = Retriever.from_bundle(bundle)
    assert faiss.extract_index_ivf(retriever.index.index).nprobe == info["nprobe"]
    # Other users than the build's sample, through the ONNX user tower as served.
    users = store.users.ids[-300:].tolist()
    queries = np.stack([retriever.user_embedding(store.get_user(u)) for u in users])
    _, found = retriever.index.index.search(queries, 100)
    scores = queries @ retriever.index.embeddings[1:].T
    exact = np.argsort(-scores, axis=1)[:, :100] + 1
    recall = np.mean([np.intersect1d(f, e).size / 100 for f, e in zip(found, exact, strict=True)])
    assert recall >= 0.9


def test_embedded_gateway_recommends_from_the_users_taste(bundle: Bundle, store, start_embedded):
    catalog = GatewayCatalog.from_bundle(bundle)
    user = store.users.ids[0]
    state = store.get_user(user)
    history_tags = Counter(t for row in state.seen.tolist() for t in catalog.item_tags[row])
    with RecserveClient(start_embedded(), timeout=60) as client:
        reply = client.recommend(user, k=20)
        cold = client.recommend("nobody-we-know", k=5)
    ids = [item.item_id for item in reply.items]
    assert len(set(ids)) == 20 and reply.model_version == bundle.version
    assert not reply.cold_start and list(reply.fallbacks) == []
    assert all(item.title.startswith("Synthetic item") for item in reply.items)
    assert reply.HasField("user_value") and reply.user_value.user_id == user
    # The user sits near the items they interacted with: recommendations share their tags.
    recommended = Counter(t for item in reply.items for t in item.tags)
    assert recommended.most_common(1)[0][0] in history_tags
    assert cold.cold_start
    assert [i.item_id for i in cold.items] == catalog.ids[catalog.popular(5)].tolist()
