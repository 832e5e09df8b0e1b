"""RankingService: protobuf <-> OnnxRanker, nothing else."""

from __future__ import annotations

import grpc
import numpy as np

from recserve.v1 import ranking_pb2, ranking_pb2_grpc
from services.common import convert
from services.common.errors import check_limit
from services.ranking.batcher import RankBatcher
from services.ranking.ranker import OnnxRanker


class RankingServicer(ranking_pb2_grpc.RankingServiceServicer):
    """With a batcher, concurrent requests share ONNX Runtime calls; without, each runs alone."""

    def __init__(self, ranker: OnnxRanker, batcher: RankBatcher | None = None) -> None:
        self._ranker = ranker
        self._batcher = batcher

    async def Rank(
        self, request: ranking_pb2.RankRequest, context: grpc.aio.ServicerContext
    ) -> ranking_pb2.RankResponse:
        check_limit(
            "item_indices",
            len(request.item_indices),
            self._ranker.max_candidates,
            "RECSERVE_RANKING_MAX_CANDIDATES",
        )
        user = convert.user_state_from_proto(request.user)
        items = np.asarray(request.item_indices, dtype=np.int64)
        if self._batcher is not None:
            scores = await self._batcher.rank(user, items)
        else:
            scores = self._ranker.rank(user, items)
        return convert.rank_scores_to_proto(
            scores, self._ranker.bundle_version, self._ranker.provider
        )


def register(ranker: OnnxRanker, batcher: RankBatcher | None = None):
    """-> a `register(server)` callback for services.common.server.create_server."""

    def _register(server: grpc.aio.Server) -> None:
        ranking_pb2_grpc.add_RankingServiceServicer_to_server(
            RankingServicer(ranker, batcher), server
        )

    return _register
