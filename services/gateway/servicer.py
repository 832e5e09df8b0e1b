"""Gateway: the public recserve.v1.Gateway API. Protobuf <-> pipeline, nothing else."""

from __future__ import annotations

from collections.abc import Callable

import grpc

from recserve.v1 import common_pb2, gateway_pb2, gateway_pb2_grpc
from services.contract.errors import check_limit
from services.gateway import validate
from services.gateway.experiments import ExperimentRunner
from services.gateway.pipeline import Pipeline
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
        """The message form, for callers in this process; the server sends `recommend_wire`'s
        bytes (the same message, written without a message object per item)."""
        return gateway_pb2.RecommendResponse.FromString(await self.recommend_wire(request, context))

    async def recommend_wire(
        self, request: gateway_pb2.RecommendRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        """A serialized RecommendResponse: the items' bytes (RankedItems.wire), then the other
        fields as a message (serialized messages concatenate: the parser reads one)."""
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
        rest = gateway_pb2.RecommendResponse(
            model_version=answer.model_version,
            user_value=None
            if answer.user_value is None
            else convert.user_value_fields(answer.user_value),
            cold_start=answer.cold_start,
            fallbacks=answer.fallbacks,
        )
        return answer.items.wire() + rest.SerializeToString()

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
        """The message form; the server sends `similar_items_wire`'s bytes."""
        return gateway_pb2.SimilarItemsResponse.FromString(
            await self.similar_items_wire(request, context)
        )

    async def similar_items_wire(
        self, request: gateway_pb2.SimilarItemsRequest, context: grpc.aio.ServicerContext
    ) -> bytes:
        answer = await self._pipeline.similar_items(
            request.item_id, request.k, convert.filters_from_proto(request.filters)
        )
        rest = gateway_pb2.SimilarItemsResponse(
            model_version=answer.model_version, title=answer.title
        )
        return answer.items.wire() + rest.SerializeToString()

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


class _Handlers:
    """Stands in for the server while the generated code registers the servicer: keeps the
    method handlers it is given."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler] = {}

    def add_generic_rpc_handlers(self, handlers: object) -> None:
        pass  # the same handlers come again as registered ones

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler]
    ) -> None:
        self.handlers.update(handlers)


def method_handlers(servicer: GatewayServicer) -> dict[str, grpc.RpcMethodHandler]:
    """The Gateway's handlers as the generated code makes them, except Recommend and
    SimilarItems: their servicer methods answer serialized bytes, sent as they are (no
    response serializer)."""
    found = _Handlers()
    gateway_pb2_grpc.add_GatewayServicer_to_server(servicer, found)
    handlers = found.handlers
    for name, method in (
        ("Recommend", servicer.recommend_wire),
        ("SimilarItems", servicer.similar_items_wire),
    ):
        handlers[name] = grpc.unary_unary_rpc_method_handler(
            method, request_deserializer=handlers[name].request_deserializer
        )
    return handlers


def register(
    pipeline: Pipeline | ModelHolder[Pipeline], experiments: ExperimentRunner | None = None
) -> Callable[[grpc.aio.Server], None]:
    """-> a `register(server)` callback for services.platform.server.create_server."""

    def _register(server: grpc.aio.Server) -> None:
        handlers = method_handlers(GatewayServicer(pipeline, experiments))
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE_NAME, handlers),)
        )
        server.add_registered_method_handlers(SERVICE_NAME, handlers)

    return _register
