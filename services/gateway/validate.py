"""Input checks for the public API. Each names the bad field: InvalidArgument for a malformed
value, ResourceExhausted for a request over a configured per-request bound (docs/limits.md)."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from services.contract.errors import InvalidArgument, check_limit
from services.contract.features import SECONDS_PER_DAY, day_of
from services.contract.types import Event, FilterSpec

MAX_ID_CHARS = 256
K_ENV = "RECSERVE_MAX_K"
BATCH_ENV = "RECSERVE_MAX_BATCH"


def check_id(field: str, value: str) -> None:
    if not value or not value.strip():
        raise InvalidArgument(f"{field} must not be empty")
    if len(value) > MAX_ID_CHARS:
        raise InvalidArgument(f"{field} is longer than {MAX_ID_CHARS} characters")


def check_ids(
    field: str,
    values: Sequence[str],
    limit: int,
    *,
    allow_empty: bool = False,
    env_var: str = BATCH_ENV,
) -> None:
    if not values and not allow_empty:
        raise InvalidArgument(f"{field} must not be empty")
    check_limit(f"{field} entries", len(values), limit, env_var)
    for value in values:
        check_id(f"{field} entry", value)


def check_k(k: int, max_k: int, env_var: str = K_ENV) -> None:
    if k < 1:
        raise InvalidArgument(f"k must be in 1..{max_k}, got {k}")
    check_limit("k", k, max_k, env_var)


def as_of_day(field: str, time_s: int) -> int:
    """A request time (unix seconds, 0 = now) -> the day user value is scored as of (0 = today
    by the scorer's clock). A time on 1970-01-01 would read as "now", so it is refused."""
    if time_s != 0 and time_s < SECONDS_PER_DAY:
        raise InvalidArgument(
            f"{field} must be 0 (now) or unix seconds after 1970-01-01, got {time_s}"
        )
    return day_of(time_s)


def check_filters(filters: FilterSpec, limit: int, known_tags: Collection[str]) -> None:
    if not (filters.include_tags or filters.exclude_tags or filters.exclude_items):
        return  # no filters (most requests): nothing below can fail
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
    check_limit("events", len(events), limit, BATCH_ENV)
    for n, event in enumerate(events):
        where = f"events[{n}]"
        check_id(f"{where}.user_id", event.user_id)
        check_id(f"{where}.item_id", event.item_id)
        # type, timestamp, rating and value are checked where the message is decoded
        # (services.platform.convert.event_from_proto) and again by the feature store.
