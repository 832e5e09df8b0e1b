"""Items added at runtime (cold start from content): the shared vocabulary of every service.

Rows: every service indexes items by row (0 = unknown, bundle items 1..n). The feature
service's registry gives each added item an *ordinal* (1, 2, ... in the order ids were first
added, for ever). Against a bundle with n items, the j-th registry entry whose id the bundle
does not have gets row n + j. So any process holding the same bundle and the same registry
prefix computes the same rows, with no coordination (docs/new_items.md).

`change` is the registry's change counter at an entry's last update: replicas sync with
ListAddedItems(after=<highest change seen>), paging until nothing more comes, and only then
recompute rows (entries come in change order: an old entry updated later comes after newer
ones, so a half-finished pull may have ordinal gaps; a complete one never has).

Domain code: no grpc.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from services.contract.content import MAX_TEXT_CHARS, item_text
from services.contract.errors import FailedPrecondition, InvalidArgument

MAX_ITEM_ID_CHARS = 256
MAX_TITLE_CHARS = 500
MAX_TAGS = 32
MAX_TAG_CHARS = 64
MAX_ITEMS_PER_CALL = 1_000
MAX_EMBEDDING_DIM = 4_096


@dataclass(frozen=True, slots=True)
class NewItem:
    """An item's catalog facts. `embedding` (float32[D]) is the explicit vector, if one was
    given: the registry stores it (so a retrieval or ranking replica that syncs or restarts can
    index an item that has no text to encode); `row` is the row a registry assigned
    (Retrieval.AddItems input)."""

    item_id: str
    title: str = ""
    tags: tuple[str, ...] = ()
    description: str = ""
    embedding: np.ndarray | None = field(default=None, compare=False)
    row: int = 0

    @property
    def text(self) -> str:
        return item_text(self.title, self.tags, self.description)

    def same_content(self, other: NewItem) -> bool:
        """Same text (so the same content embedding)."""
        return (self.title, self.tags, self.description) == (
            other.title,
            other.tags,
            other.description,
        )

    def same_embedding(self, other: NewItem) -> bool:
        """Same explicit vector (or neither has one)."""
        if self.embedding is None or other.embedding is None:
            return self.embedding is None and other.embedding is None
        return np.array_equal(
            np.asarray(self.embedding, np.float32), np.asarray(other.embedding, np.float32)
        )

    def to_json(self) -> dict:
        """Registry form (durable log, snapshots, Redis): no row; an explicit embedding as
        base64 of its float32 little-endian bytes (exact, compact, opaque to Redis's Lua)."""
        obj = {
            "id": self.item_id,
            "title": self.title,
            "tags": list(self.tags),
            "description": self.description,
        }
        if self.embedding is not None:
            raw = np.asarray(self.embedding, dtype="<f4").reshape(-1).tobytes()
            obj["embedding"] = base64.b64encode(raw).decode("ascii")
        return obj

    @classmethod
    def from_json(cls, obj: dict) -> NewItem:
        """Entries written before proxies were dropped also carry a proxy row: ignored."""
        embedding = None
        if obj.get("embedding"):  # absent in entries written before embeddings were stored
            embedding = np.frombuffer(base64.b64decode(obj["embedding"]), dtype="<f4").copy()
        return cls(
            item_id=str(obj["id"]),
            title=str(obj.get("title", "")),
            tags=tuple(str(t) for t in obj.get("tags", ())),
            description=str(obj.get("description", "")),
            embedding=embedding,
        )


@dataclass(frozen=True, slots=True)
class AddedItem:
    """A registry entry: ordinal (stable), row (in some bundle; 0 = the bundle has the id),
    the item's latest facts, and the change counter at its last update."""

    ordinal: int
    row: int
    item: NewItem
    change: int = 0


def validate_new_items(items: Sequence[NewItem], *, max_items: int = MAX_ITEMS_PER_CALL) -> None:
    """InvalidArgument for a batch no service should accept (all or nothing)."""
    if not items:
        raise InvalidArgument("items is empty")
    if len(items) > max_items:
        raise InvalidArgument(f"{len(items)} items in one call; at most {max_items}")
    seen: set[str] = set()
    for item in items:
        name = item.item_id[:40]
        if not item.item_id or not item.item_id.strip():
            raise InvalidArgument("item with an empty item_id")
        if len(item.item_id) > MAX_ITEM_ID_CHARS:
            raise InvalidArgument(f"item_id {name!r}...: over {MAX_ITEM_ID_CHARS} characters")
        if item.item_id in seen:
            raise InvalidArgument(f"item {name!r} appears twice in one call")
        seen.add(item.item_id)
        if len(item.title) > MAX_TITLE_CHARS:
            raise InvalidArgument(f"item {name!r}: title over {MAX_TITLE_CHARS} characters")
        if len(item.description) > MAX_TEXT_CHARS:
            raise InvalidArgument(f"item {name!r}: description over {MAX_TEXT_CHARS} characters")
        if len(item.tags) > MAX_TAGS:
            raise InvalidArgument(f"item {name!r}: {len(item.tags)} tags; at most {MAX_TAGS}")
        if any(not t.strip() or len(t) > MAX_TAG_CHARS for t in item.tags):
            raise InvalidArgument(f"item {name!r}: empty tag or tag over {MAX_TAG_CHARS} chars")
        if not item.title.strip() and not item.description.strip() and item.embedding is None:
            raise InvalidArgument(f"item {name!r}: needs a title, a description or an embedding")
        if item.row < 0:
            raise InvalidArgument(f"item {name!r}: negative row")
        if item.embedding is not None:  # the size is checked by whoever knows the dimension
            vec = np.asarray(item.embedding)
            if vec.size > MAX_EMBEDDING_DIM:
                raise InvalidArgument(f"item {name!r}: embedding over {MAX_EMBEDDING_DIM} values")
            if not np.isfinite(vec).all():
                raise InvalidArgument(f"item {name!r}: embedding is not finite")


def check_embedding(item: NewItem, dim: int) -> np.ndarray:
    """The item's explicit embedding as float32[dim], L2-normalised; InvalidArgument if it is
    the wrong size, not finite or zero."""
    vec = np.asarray(item.embedding, dtype=np.float32).reshape(-1)
    if vec.size != dim:
        raise InvalidArgument(
            f"item {item.item_id[:40]!r}: embedding has {vec.size} values, expected {dim}"
        )
    if not np.isfinite(vec).all():
        raise InvalidArgument(f"item {item.item_id[:40]!r}: embedding is not finite")
    norm = float(np.linalg.norm(vec))
    if not norm > 1e-12:
        raise InvalidArgument(f"item {item.item_id[:40]!r}: embedding is all zeros")
    return vec / norm


def item_vectors(items: Sequence[NewItem], encoder, dim: int) -> np.ndarray:
    """The item-tower vectors of added items, float32[N, dim], L2-normalised: the explicit
    embedding when the item has one (`check_embedding`), else its text (`NewItem.text`) through
    the bundle's content encoder (services.contract.content.ContentEncoder, or any object with
    .encode(texts) -> float32[N, D]). The one definition: retrieval indexes these vectors and
    ranking reads them as item features, so both score an added item alike.
    FailedPrecondition when text must be encoded and `encoder` is None."""
    vectors = np.zeros((len(items), dim), dtype=np.float32)
    to_encode = [i for i, item in enumerate(items) if item.embedding is None]
    for i, item in enumerate(items):
        if item.embedding is not None:
            vectors[i] = check_embedding(item, dim)
    if to_encode:
        if encoder is None:
            raise FailedPrecondition(
                "this bundle has no content encoder: pass each new item's embedding "
                f"({dim} floats), or serve a bundle trained with one"
            )
        encoded = np.asarray(encoder.encode([items[i].text for i in to_encode]), np.float32)
        norms = np.linalg.norm(encoded, axis=1, keepdims=True)
        vectors[to_encode] = encoded / np.maximum(norms, 1e-12)
    return vectors


def stale_entries(
    entries: Sequence[AddedItem],
    n_base_rows: int,
    in_base: Callable[[str], bool],
    held: Callable[[str], tuple[int, NewItem] | None],
) -> list[NewItem]:
    """Registry entries (all of them, ordinal order: the item sync's mirror) a consumer must
    (re)apply: ids it does not hold (`held(id)` -> (row, item) or None), holds at another row
    than the registry's order gives, or holds with other text or another explicit vector.
    -> the items with their rows set. Retrieval (its index) and ranking (its item table)
    reconcile with this one rule."""
    rows = assign_rows([e.item for e in entries], n_base_rows, in_base)
    out = []
    for entry in entries:
        item, row = entry.item, rows.get(entry.item.item_id)
        if row is None:
            continue
        have = held(item.item_id)
        if (
            have is not None
            and have[0] == row
            and have[1].same_content(item)
            and (item.embedding is None or have[1].same_embedding(item))
        ):
            continue
        out.append(replace(item, row=row))
    return out


def assign_rows(
    entries: Iterable[NewItem], n_base_rows: int, in_base: Callable[[str], bool]
) -> dict[str, int]:
    """Registry entries in ordinal order -> {item_id: row} for ids the bundle lacks.
    n_base_rows = the bundle's rows including row 0 (so the first added row is n + 1)."""
    rows: dict[str, int] = {}
    for item in entries:
        if item.item_id in rows or in_base(item.item_id):
            continue
        rows[item.item_id] = n_base_rows + len(rows)
    return rows


def encode_registry(entries: Sequence[AddedItem]) -> str:
    """JSON text of registry entries (snapshots): ordinal, change and the item's facts."""
    return json.dumps(
        [{"ordinal": e.ordinal, "change": e.change, **e.item.to_json()} for e in entries],
        ensure_ascii=False,
    )


def decode_registry(text: str) -> list[AddedItem]:
    return [
        AddedItem(int(o["ordinal"]), 0, NewItem.from_json(o), int(o["change"]))
        for o in json.loads(text)
    ]
