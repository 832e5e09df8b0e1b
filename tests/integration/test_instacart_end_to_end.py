"""Instacart through the whole path: the contract folder -> `recserve train --data instacart`
-> an embedded gateway over gRPC. Groceries are bought again, have no ratings and no money,
and the answers say so."""

from __future__ import annotations

from pathlib import Path

import grpc
import pandas as pd
import pytest

from recserve.cli import main as recserve
from recserve.client import RecserveClient
from services.contract.bundle import Bundle, resolve_bundle_dir

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def bundle(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Bundle:
    """Overrides the MovieLens bundle of tests/integration/conftest.py for this module."""
    artifacts = tmp_path_factory.mktemp("instacart") / "artifacts"
    argv = ["train", "--data", "instacart", "--data-dir", str(data_dir), "--tiny",
            "--no-progress", "--artifacts", str(artifacts)]  # fmt: skip
    assert recserve(argv) == 0
    return Bundle.load(resolve_bundle_dir(artifacts, "latest"))


@pytest.fixture(scope="module")
def client(embedded_gateway: str):
    with RecserveClient(embedded_gateway, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def bought(bundle: Bundle) -> dict[str, set[str]]:
    """user -> items bought in the bundle's training log."""
    log = pd.read_parquet(bundle.path("interactions.parquet"), columns=["user_id", "item_id"])
    return log.groupby("user_id")["item_id"].agg(set).to_dict()


def test_manifest_describes_the_shop(bundle: Bundle) -> None:
    m = bundle.manifest
    assert m["dataset"]["name"] == "instacart" and m["dataset"]["repeat"] is True
    assert m["rating_model"] is None
    assert m["value"]["unit"] == "interactions" and m["value"]["kind"] == "engagement"
    assert "content" not in m  # no titles or descriptions: no content encoder
    assert m["feature_spec"]["user_fields"] == [] and m["feature_spec"]["tags"] == []


def test_default_answer_buys_again(client, bought) -> None:
    """repeat = true: unless the caller says otherwise, a shopper's usual items come back."""
    heavy = sorted(bought, key=lambda u: len(bought[u]), reverse=True)[:5]
    again = 0
    for user in heavy:
        reply = client.recommend(user, k=20)
        ids = [item.item_id for item in reply.items]
        assert len(ids) == len(set(ids)) == 20
        assert not reply.cold_start and list(reply.fallbacks) == []
        again += len(set(ids) & bought[user])
    assert again > 0


def test_new_products_only_when_asked(client, bought) -> None:
    user = max(bought, key=lambda u: len(bought[u]))
    reply = client.recommend(user, k=20, exclude_seen=True)
    assert len(reply.items) == 20
    assert not {item.item_id for item in reply.items} & bought[user]


def test_no_ratings_means_no_rating_model(client, bought) -> None:
    user = next(iter(bought))
    with pytest.raises(grpc.RpcError) as caught:
        client.predict_ratings(user, [next(iter(bought[user]))])
    assert caught.value.code() is grpc.StatusCode.FAILED_PRECONDITION
    assert "no rating model" in caught.value.details()
    reply = client.recommend(user, k=5)
    assert all(item.predicted_rating == 0.0 for item in reply.items)


def test_value_is_engagement_not_money(client, bought) -> None:
    users = sorted(bought)[:3]
    reply = client.score_users(users)
    assert [v.user_id for v in reply.values] == users
    assert all(v.unit == "interactions" for v in reply.values)
    assert all(0.0 <= v.p_active <= 1.0 and v.expected_value >= 0 for v in reply.values)
