"""UserValueService: protobuf <-> UserValueScorer, nothing else (plus request-size checks)."""

from __future__ import annotations

import grpc

from recserve.v1 import uservalue_pb2, uservalue_pb2_grpc
from services.contract.errors import InvalidArgument, check_limit
from services.platform import convert
from services.platform.reload import ModelHolder, as_holder
from services.uservalue.scorer import UserValueScorer

USERS_ENV = "RECSERVE_USERVALUE_MAX_USERS"


class UserValueServicer(uservalue_pb2_grpc.UserValueServiceServicer):
    def __init__(
        self,
        scorer: UserValueScorer | ModelHolder[UserValueScorer],
        bundle_version: str,
        max_users: int = 1_000,
    ):
        self._holder = as_holder(scorer, bundle_version)  # a holder: hot reload swaps it
        self._max_users = max_users

    async def Score(
        self, request: uservalue_pb2.ScoreRequest, context: grpc.aio.ServicerContext
    ) -> uservalue_pb2.ScoreResponse:
        user_ids = list(request.user_ids)
        if not user_ids:
            raise InvalidArgument("user_ids is empty")
        check_limit("user_ids", len(user_ids), self._max_users, USERS_ENV)
        if not all(user_ids):
            raise InvalidArgument("empty id among user_ids")
        check_limit("activities", len(request.activities), self._max_users, USERS_ENV)
        if request.as_of_day < 0:
            raise InvalidArgument(f"as_of_day={request.as_of_day} must be >= 0")
        activities = convert.activities_from_proto(request.activities) or None
        version, scorer = self._holder.live
        scores = scorer.score(user_ids, activities, as_of_day=request.as_of_day)
        return uservalue_pb2.ScoreResponse(
            values=[convert.user_value_to_proto(s) for s in scores], bundle_version=version
        )


def register(
    scorer: UserValueScorer | ModelHolder[UserValueScorer],
    bundle_version: str,
    max_users: int = 1_000,
):
    """-> a `register(server)` callback for services.platform.server.create_server."""

    def _register(server: grpc.aio.Server) -> None:
        uservalue_pb2_grpc.add_UserValueServiceServicer_to_server(
            UserValueServicer(scorer, bundle_version, max_users), server
        )

    return _register
