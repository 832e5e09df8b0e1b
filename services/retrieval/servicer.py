"""RetrievalService: protobuf <-> Retriever, nothing else."""

from __future__ import annotations

import grpc

from recserve.v1 import retrieval_pb2, retrieval_pb2_grpc
from services.common import convert
from services.common.errors import check_limit
from services.retrieval.retriever import Retriever

K_ENV = "RECSERVE_RETRIEVAL_MAX_K"


class RetrievalServicer(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, retriever: Retriever) -> None:
        self._retriever = retriever

    async def Retrieve(
        self, request: retrieval_pb2.RetrieveRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.Candidates:
        check_limit("k", request.k, self._retriever.max_k, K_ENV)
        user = convert.user_state_from_proto(request.user)
        filters = convert.filters_from_proto(request.filters)
        found = self._retriever.retrieve(user, request.k, filters)
        return convert.candidates_to_proto(found, self._retriever.bundle_version)

    async def RetrieveSimilar(
        self, request: retrieval_pb2.RetrieveSimilarRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.Candidates:
        check_limit("k", request.k, self._retriever.max_k, K_ENV)
        filters = convert.filters_from_proto(request.filters)
        found = self._retriever.similar(request.item_id, request.k, filters)
        return convert.candidates_to_proto(found, self._retriever.bundle_version)

    async def TagAffinities(
        self, request: retrieval_pb2.TagAffinitiesRequest, context: grpc.aio.ServicerContext
    ) -> retrieval_pb2.TagAffinitiesResponse:
        user = convert.user_state_from_proto(request.user)
        # Range-check user index, profile and history (InvalidArgument) before anything indexes
        # with them: the history's tag shares are read before the user tower ever runs.
        self._retriever.inputs.feeds(user)
        pairs = self._retriever.tag_affinities(user, request.k)
        return retrieval_pb2.TagAffinitiesResponse(
            tags=[t for t, _ in pairs],
            affinities=[a for _, a in pairs],
            bundle_version=self._retriever.bundle_version,
        )


def register(retriever: Retriever):
    """-> a `register(server)` callback for services.common.server.create_server."""

    def _register(server: grpc.aio.Server) -> None:
        retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(
            RetrievalServicer(retriever), server
        )

    return _register
