"""A dataset's raw tables -> encoded arrays: vocabularies, FeatureSpec, side-feature tables.

Everything here is derived with the serving-side feature code (services.contract.features) so the
models see exactly what the services will send. Which attributes exist comes from the dataset's
declaration (training.data.contract); nothing here knows a particular data set. Shapes:
U = users + 1, I = items + 1 (row 0 = unknown), P = profile fields, A = item attributes,
T = tags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from services.contract.features import (
    CATEGORICAL,
    NUMERIC,
    FeatureSpec,
    FieldSpec,
    coded_event_tokens,
    encode_item_attributes,
    encode_profiles,
    tags_multi_hot,
)
from services.contract.vocab import Vocabulary
from training.data import InteractionData
from training.data.contract import MAX_NUMERIC_BUCKETS, AttributeSpec

MAX_CATEGORIES = 10_000  # most frequent values of a categorical attribute; the rest are unknown


@dataclass(frozen=True)
class EncodedCatalog:
    """Vocabularies plus per-row side features of users and items."""

    spec: FeatureSpec
    users: Vocabulary
    items: Vocabulary
    user_profiles: np.ndarray  # int64[U, P], row 0 zeros
    item_tags: np.ndarray  # float32[I, T] multi-hot, row 0 zeros
    item_attrs: np.ndarray  # int64[I, A] attribute codes, 0 = unknown, row 0 zeros
    # the dataset's rating scale (low, high): where a rating sits on it is its event token
    rating_scale: tuple[float, float] = (1.0, 5.0)

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
    ids = list(dict.fromkeys(table[column].astype(str).tolist())) if column in table else []
    known = set(ids)
    extra = sorted(set(events[column].astype(str).tolist()) - known)
    return ids + extra


def field_specs(table: pd.DataFrame, declared: AttributeSpec) -> tuple[FieldSpec, ...]:
    """One FieldSpec per declared attribute: categorical vocabularies (most frequent first
    MAX_CATEGORIES, then sorted) and numeric bucket edges (declared, else quantiles)."""
    out: list[FieldSpec] = []
    for name in declared.categorical:
        column = table[name].astype(str) if name in table else pd.Series([], dtype=str)
        counts = column[column != ""].value_counts()
        out.append(
            FieldSpec(name, CATEGORICAL, values=tuple(sorted(counts.index[:MAX_CATEGORIES])))
        )
    for name in declared.numeric:
        edges = declared.boundaries.get(name)
        if edges is None:
            values = pd.to_numeric(table[name], errors="coerce") if name in table else pd.Series()
            edges = quantile_edges(values.dropna().to_numpy(np.float64))
        out.append(FieldSpec(name, NUMERIC, boundaries=tuple(float(e) for e in edges)))
    return tuple(out)


def quantile_edges(values: np.ndarray, buckets: int = MAX_NUMERIC_BUCKETS) -> tuple[float, ...]:
    """Up to buckets - 1 distinct inner quantiles of the observed values."""
    if values.size == 0:
        return ()
    qs = np.quantile(values, np.linspace(0.0, 1.0, buckets + 1)[1:-1])
    return tuple(float(q) for q in np.unique(qs))


def _columns(
    table: pd.DataFrame, key: str, ids: list[str], fields: tuple[FieldSpec, ...]
) -> dict[str, list]:
    """The declared attribute columns of a side table, aligned to the vocabulary's ids."""
    if key not in table or not fields:
        return {}
    aligned = table.assign(**{key: table[key].astype(str)}).set_index(key).reindex(ids)
    return {f.name: aligned[f.name].tolist() for f in fields if f.name in aligned}


def build_catalog(data: InteractionData, history_len: int = 50) -> EncodedCatalog:
    """Vocabularies and encoded side features for every user and item of `data`."""
    users = Vocabulary(_catalog_ids(data.users, data.events, "user_id"))
    items = Vocabulary(_catalog_ids(data.items, data.events, "item_id"))
    tag_lists = data.items["tags"] if "tags" in data.items else pd.Series([], dtype=object)
    spec = FeatureSpec(
        history_len=history_len,
        tags=tuple(sorted({t for row in tag_lists for t in row})),
        user_fields=field_specs(data.users, data.config.users),
        item_fields=field_specs(data.items, data.config.items),
    )
    user_ids, item_ids = users.ids.tolist(), items.ids.tolist()
    profiles = np.zeros((len(users), len(spec.profile_cardinalities)), dtype=np.int64)
    profiles[1:] = encode_profiles(
        spec, _columns(data.users, "user_id", user_ids, spec.user_fields), len(user_ids)
    )
    item_attrs = np.zeros((len(items), len(spec.item_cardinalities)), dtype=np.int64)
    item_attrs[1:] = encode_item_attributes(
        spec, _columns(data.items, "item_id", item_ids, spec.item_fields), len(item_ids)
    )
    item_table = data.items.assign(item_id=data.items["item_id"].astype(str)).set_index("item_id")
    item_tags = np.zeros((len(items), len(spec.tags)), dtype=np.float32)
    if "tags" in item_table:
        item_tags[1:] = tags_multi_hot(
            spec,
            [
                list(t) if isinstance(t, list | np.ndarray) else []
                for t in item_table["tags"].reindex(item_ids)
            ],
        )
    scale = (float(data.config.ratings.low), float(data.config.ratings.high))
    return EncodedCatalog(spec, users, items, profiles, item_tags, item_attrs, scale)


def index_events(catalog: EncodedCatalog, events: pd.DataFrame) -> pd.DataFrame:
    """Events + user_index/item_index/event_token columns, sorted by (user_index, timestamp),
    stable. event_token: services.contract.features.event_tokens of the event's type and
    rating (what the feature service records for a live event)."""
    out = events.assign(
        user_index=catalog.users.indices(events["user_id"].astype(str)),
        item_index=catalog.items.indices(events["item_id"].astype(str)),
        event_token=event_token_column(events, catalog.rating_scale),
    )
    return out.sort_values(["user_index", "timestamp"], kind="stable").reset_index(drop=True)


def event_token_column(events: pd.DataFrame, scale: tuple[float, float]) -> np.ndarray:
    """int64[N]: each event's token (coded_event_tokens of its type and rating)."""
    if "event_type" in events:
        codes, types = pd.factorize(events["event_type"].astype(str), sort=False)
        names, codes = list(types), np.maximum(codes, 0)
    else:
        names, codes = [""], np.zeros(len(events), dtype=np.int64)  # "other" unless rated
    ratings = events["rating"] if "rating" in events else np.full(len(events), np.nan)
    return coded_event_tokens(names, codes, np.asarray(ratings, dtype=np.float64), scale)
