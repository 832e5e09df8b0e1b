"""Split mode: every stage is a gRPC client of its own service.

One long-lived channel per backend (HTTP/2 multiplexes all concurrent calls over it) and one
deadline per stage. Failures come back as domain errors: DEADLINE_EXCEEDED → DeadlineExceeded,
INVALID_ARGUMENT / NOT_FOUND → the same, FAILED_PRECONDITION naming the bundle versions the
backend serves → WrongVersion (the pipeline retries on one of them, services.gateway.pipeline),
anything else (down, overloaded, broken) → Unavailable, which the pipeline turns into a flagged
fallback.

Every call goes through the backend's StageGuard (services.gateway.resilience): one circuit
breaker per backend (open = fail fast with CircuitOpen, an Unavailable), bounded retries with
full jitter for idempotent reads, all inside the stage's deadline. ApplyEvents is never retried.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import grpc
import numpy as np

from recserve.v1 import (
    common_pb2,
    feature_pb2,
    feature_pb2_grpc,
    ranking_pb2,
    ranking_pb2_grpc,
    retrieval_pb2,
    retrieval_pb2_grpc,
    uservalue_pb2,
    uservalue_pb2_grpc,
)
from services.contract.added_items import AddedItem, NewItem
from services.contract.bundle import Bundle
from services.contract.errors import (
    InvalidArgument,
    NotFound,
    RecserveError,
    Unavailable,
    served_versions,
)
from services.contract.features import FeatureSpec
from services.contract.types import CandidateList, Event, FilterSpec, RankScores, UserState
from services.gateway.config import Backend, GatewaySettings, Resilience
from services.gateway.resilience import CircuitBreaker, NotSent, StageGuard, State
from services.gateway.stages import Activity, DeadlineExceeded, Stages, ValueScore, WrongVersion
from services.platform import convert, metrics
from services.platform.item_sync import ListFn, grpc_list_fn
from services.platform.security import SecuritySettings, aio_channel

_CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", 16 << 20),
    ("grpc.max_send_message_length", 16 << 20),
    ("grpc.keepalive_time_ms", 30_000),
    # Reconnect quickly after a backend restarts (default backoff grows to 120 s).
    ("grpc.max_reconnect_backoff_ms", 2_000),
    # Balance per call over every address the name resolves to (a Kubernetes headless Service:
    # dns:///retrieval-headless:50053); with one address this is the same as pick_first.
    ("grpc.lb_policy_name", "round_robin"),
]


# What gRPC core says when a call failed before anything reached the server.
_NOT_SENT = ("failed to connect", "connection refused")


def domain_error(stage: str, exc: grpc.aio.AioRpcError) -> RecserveError:
    code, details = exc.code(), exc.details() or ""
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(details)
    if code is grpc.StatusCode.NOT_FOUND:
        return NotFound(details)
    if code is grpc.StatusCode.DEADLINE_EXCEEDED:
        return DeadlineExceeded(f"{stage} service: deadline exceeded")
    message = f"{stage} service: {code.name.lower()}: {details}"
    if code is grpc.StatusCode.FAILED_PRECONDITION:
        served = served_versions(details)
        if served is not None:
            return WrongVersion(message, served)
    lowered = details.lower()
    if code is grpc.StatusCode.UNAVAILABLE and any(s in lowered for s in _NOT_SENT):
        return NotSent(message)  # nothing reached the backend: safe to re-send, even a write
    return Unavailable(message)


def guard_for(name: str, deadline_s: float, resilience: Resilience) -> StageGuard:
    """A backend's breaker + retry policy, reporting to services.platform.metrics."""

    def on_change(backend: str, state: State) -> None:
        metrics.CIRCUIT_STATE.labels(backend).set(int(state))
        if state is State.OPEN:
            metrics.CIRCUIT_OPENED.labels(backend).inc()

    metrics.CIRCUIT_STATE.labels(name).set(int(State.CLOSED))
    return StageGuard(
        name,
        deadline_s,
        CircuitBreaker(name, resilience.breaker, on_change=on_change),
        resilience.retry,
        on_error=lambda code: metrics.STAGE_ERRORS.labels(name, code).inc(),
        on_retry=lambda: metrics.RETRIES.labels(name).inc(),
    )


def backend_channel(backend: Backend, security: SecuritySettings | None) -> grpc.aio.Channel:
    """TLS per RECSERVE_TLS_CA/_CLIENT_CERT/_CLIENT_KEY; RECSERVE_INTERNAL_API_KEY on every call."""
    security = security if security is not None else SecuritySettings()
    return aio_channel(
        backend.address,
        tls=security.client_tls,
        api_key=security.outgoing_key,
        options=_CHANNEL_OPTIONS,
    )


class _Client:
    """One backend: its channel, its deadline, and the error mapping."""

    guard: StageGuard | None = None  # set by connect(); None: default resilience settings

    def __init__(self, backend: Backend, security: SecuritySettings | None = None) -> None:
        self.name = backend.name
        self.deadline_s = backend.deadline_s
        self.channel = backend_channel(backend, security)

    async def call(self, rpc: Any, request: Any, *, idempotent: bool = True) -> Any:
        """One RPC through the backend's breaker and retries, within its deadline."""
        if self.guard is None:
            self.guard = guard_for(self.name, self.deadline_s, Resilience())

        async def attempt(timeout_s: float) -> Any:
            try:
                return await rpc(request, timeout=timeout_s)
            except grpc.aio.AioRpcError as exc:
                raise domain_error(self.name, exc) from None

        return await self.guard.run(attempt, idempotent=idempotent)

    async def close(self) -> None:
        await self.channel.close()


class RemoteFeatures(_Client):
    """Users are asked for in `version`, the bundle version of the pipeline this client serves
    ("" = whatever the feature service serves now); `pinned` makes a client for another version
    over the same channel, breaker and retries."""

    def __init__(
        self,
        backend: Backend,
        spec: FeatureSpec,
        security: SecuritySettings | None = None,
        version: str = "",
    ) -> None:
        super().__init__(backend, security)
        self._stub = feature_pb2_grpc.FeatureServiceStub(self.channel)
        self._shape = {"history_len": spec.history_len, "profile_len": len(spec.profile_fields)}
        self.version = version

    def pinned(self, version: str) -> RemoteFeatures:
        pinned = copy.copy(self)
        pinned.version = version
        return pinned

    async def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState:
        request = feature_pb2.GetUserRequest(
            user_id=user_id, recent_items=list(recent_items), bundle_version=self.version
        )
        reply = await self.call(self._stub.GetUser, request)
        return convert.user_state_from_proto(reply, **self._shape)

    async def get_users(self, user_ids: Sequence[str]) -> list[UserState]:
        request = feature_pb2.GetUsersRequest(user_ids=list(user_ids), bundle_version=self.version)
        reply = await self.call(self._stub.GetUsers, request)
        return [convert.user_state_from_proto(u, **self._shape) for u in reply.users]

    async def apply_events(self, events: Sequence[Event]) -> int:
        request = feature_pb2.ApplyEventsRequest(events=[convert.event_to_proto(e) for e in events])
        reply = await self.call(self._stub.ApplyEvents, request, idempotent=False)
        return int(reply.accepted)

    async def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]:
        """Idempotent upsert by id: safe to retry. Explicit embeddings are stored too (a
        retrieval replica that syncs or restarts indexes the item from them)."""
        request = common_pb2.AddItemsRequest(items=[convert.new_item_to_proto(i) for i in items])
        reply = await self.call(self._stub.AddItems, request)
        return [convert.added_item_from_proto(m) for m in reply.items]


class _UserMessages:
    """UserState -> UserFeatures, built once per user object: a Recommend sends the same user to
    retrieval and then to ranking. Keyed by identity; each entry holds its (frozen) UserState,
    so an id is not reused while its entry lives; cleared whenever it reaches `size`."""

    def __init__(self, size: int = 256) -> None:
        self._size = size
        self._built: dict[int, tuple[UserState, common_pb2.UserFeatures]] = {}

    def __call__(self, user: UserState) -> common_pb2.UserFeatures:
        hit = self._built.get(id(user))
        if hit is not None and hit[0] is user:
            return hit[1]
        msg = convert.user_state_to_proto(user)
        if len(self._built) >= self._size:
            self._built.clear()
        self._built[id(user)] = (user, msg)
        return msg


_user_message = _UserMessages()


class RemoteRetrieval(_Client):
    def __init__(self, backend: Backend, security: SecuritySettings | None = None) -> None:
        super().__init__(backend, security)
        self._stub = retrieval_pb2_grpc.RetrievalServiceStub(self.channel)

    async def retrieve(self, user: UserState, k: int, filters: FilterSpec) -> CandidateList:
        request = retrieval_pb2.RetrieveRequest(
            user=_user_message(user), k=k, filters=convert.filters_to_proto(filters)
        )
        return convert.candidates_from_proto(await self.call(self._stub.Retrieve, request))

    async def similar(self, item_id: str, k: int, filters: FilterSpec) -> CandidateList:
        request = retrieval_pb2.RetrieveSimilarRequest(
            item_id=item_id, k=k, filters=convert.filters_to_proto(filters)
        )
        return convert.candidates_from_proto(await self.call(self._stub.RetrieveSimilar, request))

    async def tag_affinities(self, user: UserState, k: int) -> list[tuple[str, float]]:
        request = retrieval_pb2.TagAffinitiesRequest(user=_user_message(user), k=k)
        reply = await self.call(self._stub.TagAffinities, request)
        return list(zip(reply.tags, (float(a) for a in reply.affinities), strict=True))

    async def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]:
        request = common_pb2.AddItemsRequest(items=[convert.new_item_to_proto(i) for i in items])
        reply = await self.call(self._stub.AddItems, request)
        return [convert.added_item_from_proto(m) for m in reply.items]


class RemoteRanking(_Client):
    def __init__(self, backend: Backend, security: SecuritySettings | None = None) -> None:
        super().__init__(backend, security)
        self._stub = ranking_pb2_grpc.RankingServiceStub(self.channel)

    async def rank(
        self,
        user: UserState,
        item_indices: np.ndarray,
        rate_top_k: int = 0,
        query: np.ndarray | None = None,
    ) -> RankScores:
        """A ranking service from before rate_top_k ignores it: it rates every candidate.
        query: sent as RankRequest.user_embedding (None: empty, the ranking service embeds the
        user itself when its ranker.onnx takes one)."""
        request = ranking_pb2.RankRequest(
            user=_user_message(user), rate_top_k=max(int(rate_top_k), 0)
        )
        request.item_indices.extend(np.asarray(item_indices, dtype=np.int64).tolist())
        if query is not None:
            request.user_embedding.extend(np.asarray(query, dtype=np.float32).tolist())
        scores = convert.rank_scores_from_proto(await self.call(self._stub.Rank, request))
        n = len(item_indices)
        if not len(scores.p_positive) == len(scores.rating) == len(scores.p_interact) == n:
            raise Unavailable("ranking service: answer not aligned with the candidates")
        return scores


class RemoteUserValue(_Client):
    def __init__(self, backend: Backend, security: SecuritySettings | None = None) -> None:
        super().__init__(backend, security)
        self._stub = uservalue_pb2_grpc.UserValueServiceStub(self.channel)

    async def score(
        self,
        user_ids: Sequence[str],
        activities: Mapping[str, Activity] | None = None,
        as_of_day: int = 0,
    ) -> list[ValueScore]:
        request = uservalue_pb2.ScoreRequest(
            user_ids=list(user_ids),
            activities=convert.activities_to_proto(activities or {}),
            as_of_day=as_of_day,
        )
        reply = await self.call(self._stub.Score, request)
        return [convert.user_value_from_proto(v) for v in reply.values]


@dataclasses.dataclass(frozen=True)
class SplitStages(Stages):
    """Split mode: gRPC clients of the four backends, which reload themselves. The stages for a
    new bundle are the same clients, the feature client pinned to the new version; the item
    sync reads the registry from the feature service over the feature stage's channel (TLS and
    the internal key apply); nothing is held live in the gateway, so nothing to adopt."""

    def for_bundle(self, bundle: Bundle) -> SplitStages:
        features = self.features
        if isinstance(features, RemoteFeatures):
            features = features.pinned(bundle.version)
        return dataclasses.replace(self, features=features)

    def registry_list_fn(self) -> ListFn | None:
        features = self.features
        return grpc_list_fn(features.channel) if isinstance(features, RemoteFeatures) else None


def connect(settings: GatewaySettings, spec: FeatureSpec, version: str = "") -> SplitStages:
    """gRPC clients for the four backends (channels connect lazily, on the first call), the
    feature client pinned to bundle `version`."""
    security = settings.server.security
    stages = SplitStages(
        features=RemoteFeatures(settings.feature, spec, security, version),
        retrieval=RemoteRetrieval(settings.retrieval, security),
        ranking=RemoteRanking(settings.ranking, security),
        uservalue=RemoteUserValue(settings.uservalue, security),
    )
    for client in (stages.features, stages.retrieval, stages.ranking, stages.uservalue):
        client.guard = guard_for(client.name, client.deadline_s, settings.resilience)
    return stages
