"""Gateway AddItems end to end, embedded mode: a new item is registered, indexed, recommended
to a user it suits (ranked by its own row and features: no proxy), accepts feedback, gets
ratings (its own) and similar items."""

from __future__ import annotations

import grpc
import numpy as np
import pytest

from recserve.client import FeedbackEvent, RecserveClient
from recserve.v1 import common_pb2, gateway_pb2_grpc
from services.contract.added_items import NewItem, item_vectors
from services.contract.content import ContentEncoder
from services.feature.store import InMemoryFeatureStore
from services.gateway.catalog import GatewayCatalog
from services.ranking.ranker import OnnxRanker
from services.retrieval.retriever import Retriever


def own_rating(bundle, user, row: int, tags, vector) -> float:
    """The rating a ranker that holds the added item (row, tags, vector) gives it."""
    ranker = OnnxRanker.from_bundle(bundle, prefer_gpu=False)
    ranker.add_items([row], [list(tags)], np.asarray(vector, np.float32).reshape(1, -1))
    return float(ranker.rank(user, np.array([row], dtype=np.int64)).rating[0])


@pytest.fixture(scope="module")
def client(embedded_gateway: str):
    with RecserveClient(embedded_gateway, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def stub(embedded_gateway: str):
    with grpc.insecure_channel(embedded_gateway) as channel:
        yield gateway_pb2_grpc.GatewayStub(channel)


def new_item(item_id: str, vector: np.ndarray | None = None, **kw) -> common_pb2.NewItem:
    item = common_pb2.NewItem(item_id=item_id, title=kw.pop("title", f"Title {item_id}"), **kw)
    if vector is not None:
        item.embedding.extend(np.asarray(vector, dtype=np.float32).tolist())
    return item


def test_a_new_item_is_recommended_rated_and_takes_feedback(client, stub, bundle, known_users):
    user_id = known_users[2]
    user = InMemoryFeatureStore.from_bundle(bundle).get_user(user_id)
    vector = Retriever.from_bundle(bundle, encoder=None).user_embedding(user)
    catalog = GatewayCatalog.from_bundle(bundle)
    tag = catalog.tag_names[0]
    reply = stub.AddItems(
        common_pb2.AddItemsRequest(items=[new_item("brand-new", vector, tags=[tag])]), timeout=30
    )
    (added,) = reply.items
    assert added.row == len(catalog) + 1 and added.ordinal == 1
    assert reply.bundle_version == bundle.version

    # Rated by its own row, tags and vector (the in-process ranker took retrieval's vector),
    # not as its former proxy, the nearest trained item.
    (rating,) = client.predict_ratings(user_id, ["brand-new"]).ratings
    unit = vector / np.linalg.norm(vector)
    assert rating.rating == pytest.approx(own_rating(bundle, user, added.row, [tag], unit), 1e-4)
    trained = np.load(bundle.path("item_embeddings.npy"), allow_pickle=False)
    nearest = catalog.ids[int(np.argmax(trained[1:] @ vector)) + 1]
    (as_proxy,) = client.predict_ratings(user_id, [str(nearest)]).ratings
    assert abs(as_proxy.rating - rating.rating) > 1e-4

    found = client.recommend(user_id, k=50)
    assert "brand-new" in [i.item_id for i in found.items] and not list(found.fallbacks)
    item = next(i for i in found.items if i.item_id == "brand-new")
    assert item.title == "Title brand-new" and list(item.tags) == [tag]
    assert 1.0 <= item.predicted_rating <= 5.0
    tagged = client.recommend(user_id, k=50, include_tags=[tag])
    assert "brand-new" in [i.item_id for i in tagged.items]
    assert "brand-new" not in [
        i.item_id for i in client.recommend(user_id, k=50, exclude_tags=[tag]).items
    ]

    (rating,) = client.predict_ratings(user_id, ["brand-new"]).ratings
    assert 1.0 <= rating.rating <= 5.0
    similar = client.similar_items("brand-new", k=5)
    assert len(similar.items) == 5 and "brand-new" not in [i.item_id for i in similar.items]

    assert client.feedback([FeedbackEvent(user_id, "brand-new", "click")]).accepted == 1
    after = client.recommend(user_id, k=50, exclude_seen=True)
    assert "brand-new" not in [i.item_id for i in after.items]  # now in the user's seen items
    again = client.recommend(user_id, k=10, exclude_seen=False)  # history holds the new row
    assert len(again.items) == 10 and not list(again.fallbacks)

    # Re-adding keeps its place (idempotent by id).
    (readded,) = stub.AddItems(
        common_pb2.AddItemsRequest(items=[new_item("brand-new", vector, tags=[tag])]), timeout=30
    ).items
    assert (readded.ordinal, readded.row) == (added.ordinal, added.row)


@pytest.mark.parametrize(
    "items, code",
    [
        ([new_item("")], grpc.StatusCode.INVALID_ARGUMENT),
        ([new_item("a"), new_item("a")], grpc.StatusCode.INVALID_ARGUMENT),
        ([new_item("x" * 300)], grpc.StatusCode.INVALID_ARGUMENT),
        ([new_item("t", title="x" * 600)], grpc.StatusCode.INVALID_ARGUMENT),
        ([new_item("no-text", title="")], grpc.StatusCode.INVALID_ARGUMENT),
        ([new_item("nan", [float("nan")] * 3)], grpc.StatusCode.INVALID_ARGUMENT),
    ],
)
def test_bad_items_get_the_right_status(stub, items, code):
    with pytest.raises(grpc.RpcError) as caught:
        stub.AddItems(common_pb2.AddItemsRequest(items=items), timeout=30)
    assert caught.value.code() == code


def test_a_text_only_item_is_embedded_by_the_bundles_content_encoder(
    client, stub, bundle, known_users
):
    """A bundle with a content encoder (training.content) needs only the item's text: retrieval
    and ranking both read it by ContentEncoder(item_text) (services.contract.added_items.
    item_vectors), so PredictRatings rates it as a ranker fed that vector does. A bundle without
    one refuses it (FAILED_PRECONDITION)."""
    item = new_item("text-only", title="Star Wars (1977)", tags=["Action", "Sci-Fi"])
    encoder = ContentEncoder.from_bundle(bundle)
    if encoder is None:
        with pytest.raises(grpc.RpcError) as caught:
            stub.AddItems(common_pb2.AddItemsRequest(items=[item]), timeout=30)
        assert caught.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        return
    (added,) = stub.AddItems(common_pb2.AddItemsRequest(items=[item]), timeout=30).items
    tags = ("Action", "Sci-Fi")
    new = NewItem("text-only", "Star Wars (1977)", tags)
    (vector,) = item_vectors([new], encoder, bundle.embedding_dim)
    user_id = known_users[3]
    user = InMemoryFeatureStore.from_bundle(bundle).get_user(user_id)
    (rating,) = client.predict_ratings(user_id, ["text-only"]).ratings
    assert rating.rating == pytest.approx(own_rating(bundle, user, added.row, tags, vector), 1e-4)
