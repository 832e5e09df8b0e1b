"""A small synchronous client for the recserve gateway (the public API, recserve.v1.Gateway).

    with RecserveClient("127.0.0.1:50051") as client:
        reply = client.recommend("196", k=10)
        for item in reply.items:
            print(item.title, item.score)

Methods return the recserve.v1 response messages; errors raise grpc.RpcError with the
server's status (INVALID_ARGUMENT, NOT_FOUND, UNAVAILABLE, UNAUTHENTICATED, ...).

A secured gateway (docs/security.md):
    tls = ClientTLS.from_files(ca="ca.pem", cert="client.pem", key="client.key")  # mTLS
    RecserveClient("gateway:50051", tls=tls, api_key="...")
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import grpc

from recserve.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.platform.security import ClientTLS, auth_metadata, sync_channel

__all__ = ["ClientTLS", "FeedbackEvent", "RecserveClient"]

DEFAULT_TARGET = "127.0.0.1:50051"

EVENT_TYPES = {
    "view": common_pb2.EVENT_TYPE_VIEW,
    "click": common_pb2.EVENT_TYPE_CLICK,
    "rating": common_pb2.EVENT_TYPE_RATING,
    "purchase": common_pb2.EVENT_TYPE_PURCHASE,
}


@dataclass(frozen=True)
class FeedbackEvent:
    """One thing a user did. kind: view | click | rating | purchase; timestamp 0 = now."""

    user_id: str
    item_id: str
    kind: str = "view"
    rating: float = 0.0
    value: float = 0.0
    timestamp: int = 0

    def to_proto(self) -> common_pb2.Event:
        if self.kind not in EVENT_TYPES:
            raise ValueError(f"event kind must be one of {', '.join(EVENT_TYPES)}")
        return common_pb2.Event(
            user_id=self.user_id,
            item_id=self.item_id,
            type=EVENT_TYPES[self.kind],
            timestamp=self.timestamp,
            rating=self.rating,
            value=self.value,
        )


class RecserveClient:
    """One channel, reused by every call; `timeout` (seconds) is each call's deadline.

    tls: dial TLS (mutual TLS when it holds a client certificate); None = plaintext.
    api_key: sent as `authorization: Bearer <key>` on every call.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        timeout: float = 5.0,
        *,
        tls: ClientTLS | None = None,
        api_key: str | None = None,
    ) -> None:
        self.target = target
        self.timeout = timeout
        self._channel = sync_channel(target, tls=tls)
        self._stub = gateway_pb2_grpc.GatewayStub(self._channel)
        self._metadata = auth_metadata(api_key) if api_key else None

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Block until the channel is connected (raises grpc.FutureTimeoutError)."""
        grpc.channel_ready_future(self._channel).result(timeout=timeout)

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        *,
        exclude_seen: bool | None = None,
        include_tags: Sequence[str] = (),
        exclude_tags: Sequence[str] = (),
        exclude_items: Sequence[str] = (),
        recent_items: Sequence[str] = (),
        time_s: int = 0,
    ) -> gateway_pb2.RecommendResponse:
        request = gateway_pb2.RecommendRequest(
            user_id=user_id,
            k=k,
            filters=common_pb2.Filters(
                exclude_seen=exclude_seen,
                include_tags=list(include_tags),
                exclude_tags=list(exclude_tags),
                exclude_items=list(exclude_items),
            ),
            context=gateway_pb2.RecommendContext(recent_items=list(recent_items), time=time_s),
        )
        return self._stub.Recommend(request, timeout=self.timeout, metadata=self._metadata)

    def predict_ratings(
        self, user_id: str, item_ids: Sequence[str]
    ) -> gateway_pb2.PredictRatingsResponse:
        request = gateway_pb2.PredictRatingsRequest(user_id=user_id, item_ids=list(item_ids))
        return self._stub.PredictRatings(request, timeout=self.timeout, metadata=self._metadata)

    def similar_items(
        self,
        item_id: str,
        k: int = 10,
        *,
        include_tags: Sequence[str] = (),
        exclude_tags: Sequence[str] = (),
        exclude_items: Sequence[str] = (),
    ) -> gateway_pb2.SimilarItemsResponse:
        request = gateway_pb2.SimilarItemsRequest(
            item_id=item_id,
            k=k,
            filters=common_pb2.Filters(
                include_tags=list(include_tags),
                exclude_tags=list(exclude_tags),
                exclude_items=list(exclude_items),
            ),
        )
        return self._stub.SimilarItems(request, timeout=self.timeout, metadata=self._metadata)

    def recommend_tags(self, user_id: str, k: int = 5) -> gateway_pb2.RecommendTagsResponse:
        request = gateway_pb2.RecommendTagsRequest(user_id=user_id, k=k)
        return self._stub.RecommendTags(request, timeout=self.timeout, metadata=self._metadata)

    def score_users(
        self, user_ids: Sequence[str], *, time_s: int = 0
    ) -> gateway_pb2.ScoreUsersResponse:
        """Values as of `time_s` (unix seconds; 0 = now)."""
        request = gateway_pb2.ScoreUsersRequest(user_ids=list(user_ids), time=time_s)
        return self._stub.ScoreUsers(request, timeout=self.timeout, metadata=self._metadata)

    def feedback(
        self, events: Iterable[FeedbackEvent | common_pb2.Event]
    ) -> gateway_pb2.FeedbackResponse:
        messages = [e if isinstance(e, common_pb2.Event) else e.to_proto() for e in events]
        request = gateway_pb2.FeedbackRequest(events=messages)
        return self._stub.Feedback(request, timeout=self.timeout, metadata=self._metadata)

    def add_items(self, items: Iterable[common_pb2.NewItem]) -> common_pb2.AddItemsResponse:
        """New items, served from now on (docs/new_items.md); idempotent by item_id."""
        request = common_pb2.AddItemsRequest(items=list(items))
        return self._stub.AddItems(request, timeout=self.timeout, metadata=self._metadata)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> RecserveClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
