"""The plumbing limit: recserve's topology with no work in it.

A gateway and four backends, each its own process, exchanging canned messages of the same size
as recserve's (built once from a real bundle: a median user's features, N candidates, N scores,
k answered items with real titles and tags). The gateway makes the same calls in the same order
(features, then retrieval ∥ user value, then ranking), so what is left is Python gRPC itself:
the ceiling recserve is measured against.

    python -m bench.plumbing ROLE --port N --bundle DIR [--backends f,r,k,u addresses]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from dataclasses import dataclass

import grpc
import numpy as np

from recserve.v1 import (
    feature_pb2,
    feature_pb2_grpc,
    gateway_pb2,
    gateway_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
    uservalue_pb2,
    uservalue_pb2_grpc,
)
from services.contract.bundle import Bundle
from services.platform import convert
from services.platform.server import create_server, run_loop, serve

ROLES = ("gateway", "feature", "retrieval", "ranking", "uservalue")


@dataclass(frozen=True)
class Canned:
    user: object  # common_pb2.UserFeatures
    candidates: object  # retrieval_pb2.Candidates
    ranks: object  # ranking_pb2.RankResponse
    values: object  # uservalue_pb2.ScoreResponse
    recommend: object  # gateway_pb2.RecommendResponse
    predict: object  # gateway_pb2.PredictRatingsResponse
    retrieve_request: object
    rank_request: object
    score_request: object


def build_canned(bundle: Bundle, n_candidates: int = 200, k: int = 20) -> Canned:
    """Messages of recserve's real sizes, from a median-activity user of `bundle`."""
    from services.contract.catalog import ItemCatalog
    from services.feature.store import InMemoryFeatureStore

    store = InMemoryFeatureStore.from_bundle(bundle)
    catalog = ItemCatalog.from_bundle(bundle)
    users = sorted(store.users.ids.tolist(), key=lambda u: store.get_user(u).event_count)
    state = store.get_user(users[len(users) // 2])
    user = convert.user_state_to_proto(state, bundle.version)
    rows = np.arange(1, min(n_candidates, len(catalog) - 1) + 1, dtype=np.int64)
    scores = np.linspace(1.0, 0.0, rows.size, dtype=np.float32)
    candidates = retrieval_pb2.Candidates(bundle_version=bundle.version)
    candidates.item_indices.extend(rows.tolist())
    candidates.scores.extend(scores.tolist())
    ranks = ranking_pb2.RankResponse(
        bundle_version=bundle.version, execution_provider="CPUExecutionProvider"
    )
    ranks.p_positive.extend(scores.tolist())
    ranks.rating.extend((scores * 4 + 1).tolist())
    ranks.p_interact.extend(scores.tolist())
    value = convert.user_value_to_proto(
        convert.ValueScore(state.user_id, 0.5, 1.2, 30.0, "ACTIVE", 39.0)
    )
    items = []
    for row in rows[:k].tolist():
        info = catalog.by_index(row)
        items.append(
            gateway_pb2.RecommendedItem(
                item_id=info.item_id,
                title=info.title,
                tags=list(info.tags),
                score=0.5,
                predicted_rating=3.5,
                stage_scores=gateway_pb2.StageScores(
                    retrieval=0.5, ranking=0.5, rating=3.5, interaction=0.5
                ),
            )
        )
    predict = gateway_pb2.PredictRatingsResponse(
        model_version=bundle.version,
        ratings=[
            gateway_pb2.PredictedRating(
                item_id=catalog.by_index(r).item_id, rating=3.5, p_positive=0.5
            )
            for r in rows[:10].tolist()
        ],
    )
    activity = convert.activities_to_proto(
        {state.user_id: (state.activity_days, state.activity_values)}
    )
    return Canned(
        user=user,
        candidates=candidates,
        ranks=ranks,
        values=uservalue_pb2.ScoreResponse(values=[value], bundle_version=bundle.version),
        recommend=gateway_pb2.RecommendResponse(
            items=items, model_version=bundle.version, user_value=value
        ),
        predict=predict,
        retrieve_request=retrieval_pb2.RetrieveRequest(user=user, k=n_candidates),
        rank_request=ranking_pb2.RankRequest(user=user, item_indices=rows.tolist()),
        score_request=uservalue_pb2.ScoreRequest(user_ids=[state.user_id], activities=activity),
    )


class CannedFeature(feature_pb2_grpc.FeatureServiceServicer):
    def __init__(self, canned: Canned) -> None:
        self.c = canned

    async def GetUser(self, request, context):
        return self.c.user

    async def ApplyEvents(self, request, context):
        return feature_pb2.ApplyEventsResponse(accepted=len(request.events))


class CannedRetrieval(retrieval_pb2_grpc.RetrievalServiceServicer):
    def __init__(self, canned: Canned) -> None:
        self.c = canned

    async def Retrieve(self, request, context):
        return self.c.candidates


class CannedRanking(ranking_pb2_grpc.RankingServiceServicer):
    def __init__(self, canned: Canned) -> None:
        self.c = canned

    async def Rank(self, request, context):
        return self.c.ranks


class CannedUserValue(uservalue_pb2_grpc.UserValueServiceServicer):
    def __init__(self, canned: Canned) -> None:
        self.c = canned

    async def Score(self, request, context):
        return self.c.values


class NoopGateway(gateway_pb2_grpc.GatewayServicer):
    """The real gateway's call graph with canned payloads and no domain work."""

    def __init__(self, canned: Canned, addresses: list[str]) -> None:
        self.c = canned
        self.channels = [grpc.aio.insecure_channel(a) for a in addresses]
        self.feature = feature_pb2_grpc.FeatureServiceStub(self.channels[0])
        self.retrieval = retrieval_pb2_grpc.RetrievalServiceStub(self.channels[1])
        self.ranking = ranking_pb2_grpc.RankingServiceStub(self.channels[2])
        self.uservalue = uservalue_pb2_grpc.UserValueServiceStub(self.channels[3])

    async def Recommend(self, request, context):
        await self.feature.GetUser(feature_pb2.GetUserRequest(user_id=request.user_id), timeout=1)
        await asyncio.gather(
            self.retrieval.Retrieve(self.c.retrieve_request, timeout=1),
            self.uservalue.Score(self.c.score_request, timeout=1),
        )
        await self.ranking.Rank(self.c.rank_request, timeout=1)
        return self.c.recommend

    async def PredictRatings(self, request, context):
        await self.feature.GetUser(feature_pb2.GetUserRequest(user_id=request.user_id), timeout=1)
        await self.ranking.Rank(self.c.rank_request, timeout=1)
        return self.c.predict

    async def Feedback(self, request, context):
        events = feature_pb2.ApplyEventsRequest(events=list(request.events))
        reply = await self.feature.ApplyEvents(events, timeout=1)
        return gateway_pb2.FeedbackResponse(accepted=reply.accepted)


def registrar(role: str, canned: Canned, backends: list[str]):
    def register(server: grpc.aio.Server) -> None:
        if role == "gateway":
            gateway_pb2_grpc.add_GatewayServicer_to_server(NoopGateway(canned, backends), server)
        elif role == "feature":
            feature_pb2_grpc.add_FeatureServiceServicer_to_server(CannedFeature(canned), server)
        elif role == "retrieval":
            retrieval_pb2_grpc.add_RetrievalServiceServicer_to_server(
                CannedRetrieval(canned), server
            )
        elif role == "ranking":
            ranking_pb2_grpc.add_RankingServiceServicer_to_server(CannedRanking(canned), server)
        else:
            uservalue_pb2_grpc.add_UserValueServiceServicer_to_server(
                CannedUserValue(canned), server
            )

    return register


async def _main(args) -> None:
    canned = build_canned(Bundle.load(args.bundle, verify=False), args.candidates, args.k)
    backends = args.backends.split(",") if args.backends else []
    server, _ = await create_server(
        registrar(args.role, canned, backends),
        port=args.port,
        service_names=["plumbing"],
        reuse_port=args.reuse_port,
    )
    await serve(server, grace=1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.plumbing")
    parser.add_argument("role", choices=ROLES)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--bundle", required=True, help="bundle directory (message sizes)")
    parser.add_argument("--backends", help="gateway: feature,retrieval,ranking,uservalue addrs")
    parser.add_argument("--candidates", type=int, default=200)
    parser.add_argument("-k", type=int, default=20)
    parser.add_argument("--reuse-port", action="store_true")
    args = parser.parse_args(argv)
    if args.role == "gateway" and len((args.backends or "").split(",")) != 4:
        parser.error("the gateway needs --backends with four addresses")
    run_loop(_main(args))  # the event loop recserve's servers use (RECSERVE_EVENT_LOOP)
    return 0


if __name__ == "__main__":
    sys.exit(main())
