"""Gateway: the public recserve.v1.Gateway API. Protobuf <-> pipeline, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from recserve.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.contract.errors import check_limit
from services.gateway import validate
from services.gateway.experiments import ExperimentRunner
from services.gateway.pipeline import Pipeline
from services.gateway.results import RankedItems
from services.platform import convert
from services.platform.logging import REQUEST_ID
from services.platform.reload import ModelHolder, as_holder

SERVICE_NAME = "recserve.v1.Gateway"


class GatewayServicer(gateway_pb2_grpc.GatewayServicer):
    def __init__(
        self,
        pipeline: Pipeline | ModelHolder[Pipeline],
        experiments: ExperimentRunner | None = None,
    ) -> None:
        self._holder = as_holder(pipeline, "")
        self._experiments = experiments
        current = self._holder.current
        if current.peers is None:  # a refused version is retried on the holder's other one
            current.peers = self._holder.get

    @property
    def _pipeline(self) -> Pipeline:
        """The live pipeline (a hot reload swaps it); each call reads it once."""
        return self._holder.current

    async def Recommend(
        self, request: gateway_pb2.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RecommendResponse:
        runner = self._experiments
        answer = await self._pipeline.recommend(
            request.user_id,
            request.k,
            convert.filters_from_proto(request.filters),
            tuple(request.context.recent_items),
            time_s=request.context.time,
            **(runner.settings(request.user_id) if runner is not None else {}),
        )
        if runner is not None:
            runner.expose(request.user_id, answer.items.item_ids, REQUEST_ID.get())
        return gateway_pb2.RecommendResponse(
            items=_items(answer.items),
            model_version=answer.model_version,
            user_value=None
            if answer.user_value is None
            else convert.user_value_fields(answer.user_value),
            cold_start=answer.cold_start,
            fallbacks=answer.fallbacks,
        )

    async def PredictRatings(
        self, request: gateway_pb2.PredictRatingsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.PredictRatingsResponse:
        answer = await self._pipeline.predict_ratings(request.user_id, tuple(request.item_ids))
        return gateway_pb2.PredictRatingsResponse(
            ratings=[
                gateway_pb2.PredictedRating(
                    item_id=r.item_id,
                    rating=r.rating,
                    p_positive=r.p_positive,
                    p_interact=r.p_interact,
                )
                for r in answer.ratings
            ],
            model_version=answer.model_version,
            cold_start=answer.cold_start,
        )

    async def SimilarItems(
        self, request: gateway_pb2.SimilarItemsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.SimilarItemsResponse:
        answer = await self._pipeline.similar_items(
            request.item_id, request.k, convert.filters_from_proto(request.filters)
        )
        return gateway_pb2.SimilarItemsResponse(
            items=_items(answer.items), model_version=answer.model_version, title=answer.title
        )

    async def RecommendTags(
        self, request: gateway_pb2.RecommendTagsRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.RecommendTagsResponse:
        answer = await self._pipeline.recommend_tags(request.user_id, request.k)
        return gateway_pb2.RecommendTagsResponse(
            tags=[gateway_pb2.TagAffinity(tag=t, affinity=a) for t, a in answer.tags],
            model_version=answer.model_version,
            cold_start=answer.cold_start,
        )

    async def ScoreUsers(
        self, request: gateway_pb2.ScoreUsersRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.ScoreUsersResponse:
        answer = await self._pipeline.score_users(tuple(request.user_ids), request.time)
        return gateway_pb2.ScoreUsersResponse(
            values=[convert.user_value_to_proto(v) for v in answer.values],
            model_version=answer.model_version,
        )

    async def Feedback(
        self, request: gateway_pb2.FeedbackRequest, context: grpc.aio.ServicerContext
    ) -> gateway_pb2.FeedbackResponse:
        limit = self._pipeline.limits.max_batch  # counted before decoding the events
        check_limit("events", len(request.events), limit, validate.BATCH_ENV)
        accepted = await self._pipeline.feedback(convert.events_from_proto(request.events))
        return gateway_pb2.FeedbackResponse(accepted=accepted)

    async def AddItems(
        self, request: common_pb2.AddItemsRequest, context: grpc.aio.ServicerContext
    ) -> common_pb2.AddItemsResponse:
        limit = self._pipeline.limits.max_batch
        check_limit("items", len(request.items), limit, validate.BATCH_ENV)
        answer = await self._pipeline.add_items(
            [convert.new_item_from_proto(m) for m in request.items]
        )
        return common_pb2.AddItemsResponse(
            items=[convert.added_item_to_proto(e) for e in answer.items],
            bundle_version=answer.bundle_version,
        )


def _items(items: RankedItems) -> list[dict]:
    """The RecommendedItem messages, as the field values the response message is built from
    (each message is built once, inside the response; no intermediate message to copy)."""
    currency = items.currency
    return [
        {
            "item_id": item_id,
            "title": title,
            "tags": tags,
            "score": score,
            "predicted_rating": rating,
            "stage_scores": {
                "retrieval": retrieval,
                "ranking": ranking,
                "rating": rating,
                "interaction": interaction,
            },
            "price": price,  # None: unset (the optional field is absent)
            "currency": currency if price is not None else "",
        }
        for item_id, title, tags, score, rating, retrieval, ranking, interaction, price in zip(
            items.item_ids,
            items.titles,
            items.tags,
            items.scores,
            items.predicted_ratings,
            items.retrieval_scores,
            items.ranking_scores,
            items.interaction_scores,
            items.prices,
            strict=True,
        )
    ]


def register(
    pipeline: Pipeline | ModelHolder[Pipeline], experiments: ExperimentRunner | None = None
) -> Callable[[grpc.aio.Server], None]:
    """-> a `register(server)` callback for services.platform.server.create_server."""

    def _register(server: grpc.aio.Server) -> None:
        servicer = GatewayServicer(pipeline, experiments)
        gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, server)

    return _register
