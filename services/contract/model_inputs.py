"""UserState -> the ONNX user inputs shared by the user tower and the ranker (batch of one):
user_index, profile, history and, for graphs that take item features as inputs (bundle
schema_version 2), the history items' features history_tags / history_attrs gathered from the
serving process's item table (services.contract.item_table).

Validates every index against the bundle's table sizes first: an out-of-range index would
otherwise fail inside ONNX Runtime as an INTERNAL error instead of INVALID_ARGUMENT. With an
item table, the valid item rows are the table's (the bundle's plus items added at runtime).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from services.contract.bundle import Bundle
from services.contract.errors import InvalidArgument
from services.contract.features import (
    HISTORY_AGE_INPUT,
    HISTORY_EVENT_INPUTS,
    HISTORY_KIND_INPUT,
    N_EVENT_TOKENS,
    UNKNOWN_AGE,
    FeatureSpec,
    history_ages,
    pad_history,
)
from services.contract.item_table import ItemTable
from services.contract.types import UserState
from services.contract.vocab import Vocabulary

# ranker.onnx's input for the query of its frozen retrieval score: the user tower's output
# float32[B, D] (bundles from 2026-12-06 on; training.export.QueryGiven exports it). Serving
# feeds the embedding retrieval computed for the request, or runs user_tower.onnx without one.
QUERY_INPUT = "user_embedding"


@dataclass(frozen=True)
class UserInputs:
    """Table sizes (rows including row 0) the models were exported with."""

    n_user_rows: int
    n_item_rows: int
    history_len: int
    profile_cardinalities: tuple[int, ...]

    @functools.cached_property
    def _cardinalities(self) -> np.ndarray:
        return np.asarray(self.profile_cardinalities, dtype=np.int64)

    @classmethod
    def from_bundle(cls, bundle: Bundle, n_item_rows: int) -> UserInputs:
        spec: FeatureSpec = bundle.feature_spec
        n_users = len(Vocabulary.load(bundle.path("user_ids.npy")))
        return cls(n_users, n_item_rows, spec.history_len, spec.profile_cardinalities)

    def check_items(
        self, item_indices: np.ndarray, what: str = "item index", n_rows: int | None = None
    ) -> None:
        """InvalidArgument unless every index is in [0, n_rows) (default: n_item_rows)."""
        n = self.n_item_rows if n_rows is None else n_rows
        if item_indices.size and (item_indices.min() < 0 or item_indices.max() >= n):
            bad = item_indices[(item_indices < 0) | (item_indices >= n)][0]
            raise InvalidArgument(f"{what} {bad} out of range [0, {n})")

    def feeds(
        self,
        user: UserState,
        table: ItemTable | None = None,
        features: Sequence[str] = (),
    ) -> dict[str, np.ndarray]:
        """-> {"user_index": int64[1], "profile": int64[1, P], "history": int64[1, H]} plus,
        for each of `features` (the graph's declared feature inputs) that describes the
        history, history_tags float32[1, H, T] / history_attrs int64[1, H, A] from `table`
        (whose rows, added items included, are then the valid history rows)."""
        if not 0 <= user.user_index < self.n_user_rows:
            raise InvalidArgument(
                f"user_index {user.user_index} out of range [0, {self.n_user_rows})"
            )
        profile = np.asarray(user.profile, dtype=np.int64)
        n_fields = len(self.profile_cardinalities)
        if profile.size == 0:
            profile = np.zeros(n_fields, dtype=np.int64)
        if profile.size != n_fields:
            raise InvalidArgument(f"profile has {profile.size} fields, expected {n_fields}")
        if ((profile < 0) | (profile >= self._cardinalities)).any():
            raise InvalidArgument(f"profile {profile.tolist()} out of range")
        history = np.asarray(user.history, dtype=np.int64)
        n_rows = table.n_rows if table is not None else None
        self.check_items(history, "history item index", n_rows)
        if history.size != self.history_len:
            history = pad_history(history, self.history_len)
        history = history.reshape(1, -1)
        out = {
            "user_index": np.asarray([user.user_index], dtype=np.int64),
            "profile": profile.reshape(1, -1),
            "history": history,
        }
        if table is not None and features:
            table_features = [n for n in features if n not in HISTORY_EVENT_INPUTS]
            if table_features:
                out.update(table.feeds(table_features, history=history))
        if HISTORY_AGE_INPUT in features or HISTORY_KIND_INPUT in features:
            out.update(self.event_feeds(user, features, history[0]))
        return out

    def event_feeds(
        self, user: UserState, features: Sequence[str], history: np.ndarray
    ) -> dict[str, np.ndarray]:
        """history_age float32[1, H] / history_kind int64[1, H] (those of `features`) from the
        user's history_times / history_kinds (services.contract.features), aligned with
        `history` int64[H] (padded): entries past the recorded ones, and padding entries, are
        unknown (age -1, kind 0). An entry read as row 0 with its event recorded (an added item
        the graph does not know: unknown_as_zero) is not padding: it keeps its age and kind.
        InvalidArgument for a kind out of range."""
        h = self.history_len
        kinds = np.asarray(user.history_kinds, dtype=np.int64)[:h]
        recorded = np.zeros(h, dtype=bool)
        recorded[: kinds.size] = kinds > 0
        padding = (history == 0) & ~recorded
        out: dict[str, np.ndarray] = {}
        if HISTORY_AGE_INPUT in features:
            times = np.asarray(user.history_times, dtype=np.int64)[:h]
            now = user.request_time or time.time()
            ages = np.full(h, UNKNOWN_AGE, dtype=np.float32)
            ages[: times.size] = history_ages(times, now)
            ages[padding] = UNKNOWN_AGE
            out[HISTORY_AGE_INPUT] = ages.reshape(1, -1)
        if HISTORY_KIND_INPUT in features:
            if kinds.size and (kinds.min() < 0 or kinds.max() >= N_EVENT_TOKENS):
                raise InvalidArgument(f"history kind out of range [0, {N_EVENT_TOKENS})")
            padded = np.zeros(h, dtype=np.int64)
            padded[: kinds.size] = kinds
            padded[padding] = 0
            out[HISTORY_KIND_INPUT] = padded.reshape(1, -1)
        return out
