"""Raw MovieLens-style tables -> encoded arrays: vocabularies, FeatureSpec, side-feature tables.

Everything here is derived with the serving-side feature code (services.common.features) so the
models see exactly what the services will send. Shapes: U = users + 1, I = items + 1 (row 0 =
unknown), P = profile fields, T = tags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.common.features import (
    FeatureSpec,
    encode_profiles,
    tags_multi_hot,
    year_buckets,
)
from services.common.vocab import Vocabulary
from training.data import InteractionData


@dataclass(frozen=True)
class EncodedCatalog:
    """Vocabularies plus per-row side features of users and items."""

    spec: FeatureSpec
    users: Vocabulary
    items: Vocabulary
    user_profiles: np.ndarray  # int64[U, P], row 0 zeros
    item_tags: np.ndarray  # float32[I, T] multi-hot, row 0 zeros
    item_years: np.ndarray  # int64[I] year bucket, 0 = unknown

    @property
    def n_users(self) -> int:
        """Rows of the user vocabulary, including row 0."""
        return len(self.users)

    @property
    def n_items(self) -> int:
        """Rows of the item vocabulary, including row 0."""
        return len(self.items)


def _catalog_ids(table: pd.DataFrame, events: pd.DataFrame, column: str) -> list[str]:
    """Ids of the side table first (in its order), then any id only seen in events."""
    ids = list(dict.fromkeys(table[column].astype(str).tolist()))
    known = set(ids)
    extra = sorted(set(events[column].astype(str).tolist()) - known)
    return ids + extra


def build_catalog(data: InteractionData, history_len: int = 50) -> EncodedCatalog:
    """Vocabularies and encoded side features for every user and item of `data`."""
    users = Vocabulary(_catalog_ids(data.users, data.events, "user_id"))
    items = Vocabulary(_catalog_ids(data.items, data.events, "item_id"))
    tags = sorted({t for row in data.items["tags"] for t in row})
    spec = FeatureSpec(
        history_len=history_len,
        genders=tuple(sorted(set(data.users["gender"].astype(str)) - {""})),
        occupations=tuple(sorted(set(data.users["occupation"].astype(str)) - {""})),
        tags=tuple(tags),
    )
    user_table = data.users.assign(user_id=data.users["user_id"].astype(str)).set_index("user_id")
    user_table = user_table.reindex(users.ids.tolist())
    profiles = np.zeros((len(users), len(spec.profile_fields)), dtype=np.int64)
    profiles[1:] = encode_profiles(
        spec,
        user_table["age"].fillna(0).astype(np.int64).to_numpy(),
        [g if isinstance(g, str) else None for g in user_table["gender"]],
        [o if isinstance(o, str) else None for o in user_table["occupation"]],
    )
    item_table = data.items.assign(item_id=data.items["item_id"].astype(str)).set_index("item_id")
    item_table = item_table.reindex(items.ids.tolist())
    item_tags = np.zeros((len(items), len(spec.tags)), dtype=np.float32)
    item_tags[1:] = tags_multi_hot(
        spec, [list(t) if isinstance(t, list | np.ndarray) else [] for t in item_table["tags"]]
    )
    item_years = np.zeros(len(items), dtype=np.int64)
    item_years[1:] = year_buckets(spec, item_table["year"].fillna(0).astype(np.int64).to_numpy())
    return EncodedCatalog(spec, users, items, profiles, item_tags, item_years)


def index_events(catalog: EncodedCatalog, events: pd.DataFrame) -> pd.DataFrame:
    """Events + user_index/item_index columns, sorted by (user_index, timestamp), stable."""
    out = events.assign(
        user_index=catalog.users.indices(events["user_id"].astype(str)),
        item_index=catalog.items.indices(events["item_id"].astype(str)),
    )
    return out.sort_values(["user_index", "timestamp"], kind="stable").reset_index(drop=True)
