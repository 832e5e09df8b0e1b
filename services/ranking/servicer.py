"""RankingService: protobuf <-> OnnxRanker, nothing else."""

from __future__ import annotations

import grpc
import numpy as np

from recserve.v1 import ranking_pb2, ranking_pb2_grpc
from services.contract.errors import InvalidArgument, check_limit
from services.platform import convert
from services.platform.reload import ModelHolder
from services.ranking.batcher import RankBatcher, RankEngine
from services.ranking.ranker import OnnxRanker


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    """With a batcher, concurrent requests share ONNX Runtime calls; without, each runs alone.
    Candidates are scored by the bundle version the request is pinned to (user bundle_version,
    "" = current) while it is held, else refused with FAILED_PRECONDITION naming the versions
    held (docs/bundle.md)."""

    def __init__(
        self,
        ranker: OnnxRanker | ModelHolder[RankEngine],
        batcher: RankBatcher | None = None,
    ) -> None:
        if not isinstance(ranker, ModelHolder):
            ranker = ModelHolder(RankEngine(ranker, batcher), ranker.bundle_version)
        self._holder = ranker

    async def Rank(
        self, request: ranking_pb2.RankRequest, context: grpc.aio.ServicerContext
    ) -> ranking_pb2.RankResponse:
        check_limit(
            "item_indices",
            len(request.item_indices),
            self._holder.current.ranker.max_candidates,
            "RECSERVE_RANKING_MAX_CANDIDATES",
        )
        user = convert.user_state_from_proto(request.user, seen=False, activity=False)
        items = np.asarray(request.item_indices, dtype=np.int64)
        version, engine = self._holder.serve(user.bundle_version)
        if request.rate_top_k < 0:
            raise InvalidArgument(f"rate_top_k must be >= 0, got {request.rate_top_k}")
        # retrieval's embedding of the user, when the gateway passes it on (else: the tower)
        query = (
            np.asarray(request.user_embedding, dtype=np.float32) if request.user_embedding else None
        )
        scores = await engine.rank(user, items, request.rate_top_k, query)
        return convert.rank_scores_to_proto(scores, version, engine.ranker.provider)


def register(
    ranker: OnnxRanker | ModelHolder[RankEngine],
    batcher: RankBatcher | None = None,
):
    """-> a `register(server)` callback for services.platform.server.create_server."""

    def _register(server: grpc.aio.Server) -> None:
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(
            RankingServicer(ranker, batcher), server
        )

    return _register
