"""Input checks for the public API. Each raises InvalidArgument naming the bad field."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from services.common.errors import InvalidArgument
from services.common.types import Event, FilterSpec

MAX_ID_CHARS = 256


def check_id(field: str, value: str) -> None:
    if not value or not value.strip():
        raise InvalidArgument(f"{field} must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"{field} is longer than {MAX_ID_CHARS} characters")


def check_ids(field: str, values: Sequence[str], limit: int, *, allow_empty: bool = False) -> None:
    if not values and not allow_empty:
        raise InvalidArgument(f"{field} must not be empty")
    if len(values) > limit:
        raise InvalidArgument(f"{field} has {len(values)} entries, at most {limit} allowed")
    for value in values:
        check_id(f"{field} entry", value)


def check_k(k: int, max_k: int) -> None:
    if not 1 <= k <= max_k:
        raise InvalidArgument(f"k must be in 1..{max_k}, got {k}")


def check_filters(filters: FilterSpec, limit: int, known_tags: Collection[str]) -> None:
    check_ids("filters.include_tags", filters.include_tags, limit, allow_empty=True)
    check_ids("filters.exclude_tags", filters.exclude_tags, limit, allow_empty=True)
    check_ids("filters.exclude_items", filters.exclude_items, limit, allow_empty=True)
    unknown = [t for t in (*filters.include_tags, *filters.exclude_tags) if t not in known_tags]
    if unknown:
        raise InvalidArgument(f"unknown tags {unknown}; known: {', '.join(known_tags)}")
    both = set(filters.include_tags) & set(filters.exclude_tags)
    if both:
        raise InvalidArgument(f"tags both included and excluded: {sorted(both)}")


def check_events(events: Sequence[Event], limit: int) -> None:
    if not events:
        raise InvalidArgument("events must not be empty")
    if len(events) > limit:
        raise InvalidArgument(f"events has {len(events)} entries, at most {limit} allowed")
    for n, event in enumerate(events):
        where = f"events[{n}]"
        check_id(f"{where}.user_id", event.user_id)
        check_id(f"{where}.item_id", event.item_id)
        # type, timestamp, rating and value are checked where the message is decoded
        # (services.common.convert.event_from_proto) and again by the feature store.
