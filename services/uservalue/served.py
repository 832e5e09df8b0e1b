"""The user-value service's served model (services.platform.service): the bundle's user-value
scorer (ONNX) with its per-user score cache."""

from __future__ import annotations

from services.contract.bundle import Bundle
from services.platform.service import ServedModel
from services.uservalue.scorer import DEFAULT_CACHE_USERS, UserValueScorer


class UserValueModel(ServedModel[UserValueScorer]):
    def __init__(self, cache_users: int = DEFAULT_CACHE_USERS) -> None:
        self.cache_users = cache_users

    def from_bundle(self, bundle: Bundle) -> UserValueScorer:
        return UserValueScorer.from_bundle(bundle, cache_users=self.cache_users)

    def warm_up(self, model: UserValueScorer, bundle: Bundle) -> None:
        # The ONNX session runs once before it serves, and the bundle snapshot's users are
        # scored for today into the cache (requests for them are hits from the start).
        model.warm_up()

    def describe(self, model: UserValueScorer, bundle: Bundle) -> str:
        return f"user-value model on {model.provider}"
