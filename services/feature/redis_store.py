"""Feature store for several replicas: bundle state in process memory, live user state in Redis.

Every replica holds the same bundle (catalog, profiles, base per-user state; see
services.feature.bundle_state). What replicas must share is the live events applied since the
bundle was built, so those live in Redis (layout in docs/feature_store.md and
services.feature.redis_layout):

    {prefix}:user:{user_id}  LIST, one entry per live event, stream order, for every bundle
                             version: "<stream id> <day>:<ts>:<kind> <activity value>
                             <item_id>" (kind: the event's token, history_kind; entries
                             written before times and kinds were kept have "<day>" alone)
    {prefix}:events          STREAM, every event (the durable log): bundle, user, item, kind,
                             ts, rating, value
    {prefix}:layout          "2" once the lists are complete (connect rebuilds them from the
                             stream when it is missing: a deployment of the per-version layout)

apply_events runs one Lua script (atomic in Redis: XADD + RPUSH per event) and returns only
after Redis replied, which with appendonly yes + appendfsync always means after the AOF was
fsynced. get_user costs one round trip (LRANGE): the base record plus the live entries folded in
with UserRecord.apply_many in order, so the answer equals InMemoryFeatureStore's for the same bundle
and events. The lists are not keyed by bundle version: a store folds the entries after the stream
position its bundle was retrained on (manifest data.split.feedback_stream; none: all), so stores
of two versions (a hot reload's grace period) see the same events. Each replica caches folded
records (LRU) and fetches only entries it has not folded yet; the first entry fetched must equal
the last one folded, else the cache is dropped (the list was reset) and the whole list is read
again.

Calls are synchronous (redis.Redis over a connection pool): the async servicer calls them on
the event loop, which blocks it for one loopback round trip (see docs/feature_store.md).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Self
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from services.contract.added_items import AddedItem, NewItem
from services.contract.bundle import Bundle
from services.contract.catalog import ItemCatalog
from services.contract.errors import ConfigError, NotFound, RecserveError, Unavailable
from services.contract.features import FeatureSpec
from services.contract.types import Event, EventKind, ItemInfo, UserState
from services.contract.vocab import Vocabulary
from services.feature.bundle_state import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_IDS,
    BundleFeatures,
    UserRecord,
    event_day,
)
from services.feature.redis_layout import (
    Rebuild,
    StreamId,
    bundle_stream_position,
    ensure_user_lists,
    entry_stream_id,
)
from services.feature.redis_registry import RedisItemRegistry

log = logging.getLogger(__name__)

DEFAULT_CACHE_USERS = 100_000
SYNC_BATCH = 1_000
_FIELDS_PER_EVENT = 7

# KEYS[1] = stream, KEYS[1 + i] = list of event i's user.
# ARGV[1] = bundle version; event i: user, item, kind, ts, rating, value, list entry suffix.
_APPLY_LUA = """
local n = #KEYS - 1
for i = 1, n do
  local b = 1 + (i - 1) * 7
  local id = redis.call('XADD', KEYS[1], '*', 'bundle', ARGV[1], 'user', ARGV[b + 1],
    'item', ARGV[b + 2], 'kind', ARGV[b + 3], 'ts', ARGV[b + 4], 'rating', ARGV[b + 5],
    'value', ARGV[b + 6])
  redis.call('RPUSH', KEYS[i + 1], id .. ' ' .. ARGV[b + 7])
end
return n
"""

# Replies that mean "Redis cannot serve this now" rather than "we sent a bad command".
_UNAVAILABLE_REPLIES = ("OOM", "READONLY", "MASTERDOWN", "LOADING", "MISCONF", "BUSY", "NOREPL")


def redacted(url: str) -> str:
    """The URL without user and password (for logs and error messages)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def redis_client(url: str, timeout_s: float = 1.0, max_connections: int = 64) -> redis.Redis:
    """A client over a connection pool; one immediate retry on a broken connection (a pooled
    socket left over from a Redis restart), none on timeouts."""
    return redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        max_connections=max_connections,
    )


def check_durable(client: redis.Redis, where: str) -> None:
    """ConfigError unless Redis runs with appendonly yes + appendfsync always (then a write is
    on disk before Redis replies, so acknowledged = durable)."""
    try:
        config = client.config_get("append*")
    except redis.ConnectionError as exc:
        raise ConfigError(f"Redis at {where} is unreachable: {exc}") from None
    except redis.RedisError as exc:
        raise ConfigError(
            f"cannot read the persistence settings of Redis at {where}: {exc}; "
            "set RECSERVE_REDIS_ALLOW_NON_DURABLE=1 to skip the check"
        ) from None
    appendonly, appendfsync = config.get("appendonly"), config.get("appendfsync")
    if appendonly != "yes" or appendfsync != "always":
        raise ConfigError(
            f"Redis at {where} has appendonly={appendonly} appendfsync={appendfsync}; acknowledged "
            "events are durable only with appendonly yes + appendfsync always "
            "(set RECSERVE_REDIS_ALLOW_NON_DURABLE=1 for a non-durable dev setup)"
        )


@contextmanager
def redis_errors() -> Iterator[None]:
    """Redis failures -> domain errors: unreachable / refusing -> Unavailable, else INTERNAL."""
    try:
        yield
    except (redis.ConnectionError, redis.TimeoutError) as exc:
        raise Unavailable(f"feature store (Redis) unavailable: {type(exc).__name__}") from exc
    except redis.ResponseError as exc:
        if str(exc).startswith(_UNAVAILABLE_REPLIES):
            raise Unavailable(f"feature store (Redis) refused: {exc}") from exc
        raise RecserveError(f"feature store (Redis) error: {exc}") from exc
    except redis.RedisError as exc:
        raise Unavailable(f"feature store (Redis) unavailable: {type(exc).__name__}") from exc


@dataclass(slots=True, frozen=True)
class _Folded:
    record: UserRecord | None  # base + the first `count` list entries (those after the
    count: int  # bundle's stream position); never mutated. None: unknown user, nothing folded
    last: str  # the last list entry read, folded or skipped (stream ids make entries unique)


def _when(field: str) -> tuple[int, int, int]:
    """A list entry's "<day>:<ts>:<kind>" -> (day, ts, kind); an entry written before times
    and kinds were kept ("<day>") -> (day, 0, 0): unknown."""
    day, _, rest = field.partition(":")
    if not rest:
        return int(day), 0, 0
    ts, _, kind = rest.partition(":")
    return int(day), int(ts), int(kind)


class RedisFeatureStore(BundleFeatures):
    """Same answers as InMemoryFeatureStore; live state shared by every replica through Redis."""

    def __init__(
        self,
        spec: FeatureSpec,
        bundle_version: str,
        users: Vocabulary,
        profiles: np.ndarray,
        catalog: ItemCatalog,
        records: dict[str, UserRecord],
        *,
        client: redis.Redis,
        prefix: str = "recserve",
        max_batch: int = DEFAULT_MAX_BATCH,
        max_ids: int = DEFAULT_MAX_IDS,
        cache_users: int = DEFAULT_CACHE_USERS,
        stream_position: StreamId | None = None,
    ) -> None:
        super().__init__(
            spec, bundle_version, users, profiles, catalog, records,
            max_batch=max_batch, max_ids=max_ids,
        )  # fmt: skip
        if not client.get_encoder().decode_responses:
            raise ConfigError("RedisFeatureStore needs a client with decode_responses=True")
        self._client = client
        self.prefix = prefix
        self.stream_key = f"{prefix}:events"
        self._user_prefix = f"{prefix}:user:"
        # Entries up to this stream id are in the bundle's base state already (None: none are).
        self.stream_position = stream_position
        self._apply = client.register_script(_APPLY_LUA)
        self._cache: OrderedDict[str, _Folded] = OrderedDict()
        self._cache_users = cache_users
        self._lock = threading.Lock()
        self._writer = ThreadPoolExecutor(max_workers=4, thread_name_prefix="redis-write")
        self.events_applied = 0
        self.unknown_item_events = 0
        self._items = RedisItemRegistry(client, prefix)

    @classmethod
    def from_bundle(cls, bundle: Bundle, **kwargs: Any) -> Self:
        """kwargs as for the constructor; the stream position is the bundle's own (manifest
        data.split.feedback_stream). Does not check the layout marker: connect does."""
        kwargs.setdefault("stream_position", bundle_stream_position(bundle))
        return super().from_bundle(bundle, **kwargs)

    @classmethod
    def connect(
        cls, bundle: Bundle, url: str, *, prefix: str = "recserve", timeout_s: float = 1.0,
        require_durable: bool = True, **kwargs: Any,
    ) -> RedisFeatureStore:  # fmt: skip
        """Bundle + a new pooled client for `url`; ConfigError when Redis is unreachable or
        (require_durable) not configured so that acknowledged writes survive a crash. Rebuilds
        the user lists from the stream first when their layout marker is missing
        (ensure_layout)."""
        client = redis_client(url, timeout_s)
        where = redacted(url)
        if require_durable:
            check_durable(client, where)
        else:
            try:
                client.ping()
            except redis.RedisError as exc:
                raise ConfigError(f"Redis at {where} is unreachable: {exc}") from None
        store = cls.from_bundle(bundle, client=client, prefix=prefix, **kwargs)
        store.ensure_layout()
        return store

    def ensure_layout(self, **kwargs: Any) -> Rebuild | None:
        """The user lists of this layout are complete once this returns: a Redis holding only
        the per-version layout's keys (or nothing) has its lists rebuilt from the stream (one
        replica does it, the others wait; logged). kwargs: see ensure_user_lists."""
        with redis_errors():
            return ensure_user_lists(
                self._client, self.prefix, self.stream_key, self.user_key, self.stream_entry,
                **kwargs,
            )  # fmt: skip

    def stream_entry(self, stream_id: str, fields: Mapping[str, str]) -> str | None:
        """The user-list entry of a stream entry, as apply_events writes it; None when the
        fields are not an event's."""
        try:
            event = Event(
                user_id=fields["user"], item_id=fields["item"], kind=EventKind(fields["kind"]),
                timestamp=int(fields["ts"]), rating=float(fields["rating"]),
                value=float(fields["value"]),
            )  # fmt: skip
        except (KeyError, ValueError):
            log.warning("stream entry %s is not an event: %r", stream_id, dict(fields))
            return None
        return f"{stream_id} {self._list_entry(event)}"

    def _list_entry(self, e: Event) -> str:
        """An entry without its stream id (the script prepends it)."""
        when = f"{event_day(e)}:{e.timestamp}:{self.history_kind(e)}"
        return f"{when} {self.activity_value(e)!r} {e.item_id}"

    def user_key(self, user_id: str) -> str:
        return self._user_prefix + user_id

    def get_user(self, user_id: str, recent_items: Sequence[str] = ()) -> UserState:
        """See BundleFeatures._state for unknown users and recent_items."""
        self._check_get_user(user_id, recent_items)
        return self._state(user_id, self._records_of([user_id])[0], recent_items)

    def get_users(self, user_ids: Sequence[str]) -> list[UserState]:
        """One pipelined round trip for the whole batch."""
        self._check_ids(user_ids, "user ids")
        records = self._records_of(user_ids)
        return [self._state(u, r) for u, r in zip(user_ids, records, strict=True)]

    def submit_events(self, events: Sequence[Event]) -> Future:
        """apply_events on a worker thread, so the server's event loop never waits for Redis's
        fsync; a bad batch still raises InvalidArgument right here, before anything is sent."""
        self._check_batch(events)
        return self._writer.submit(self.apply_events, events)

    def apply_events(self, events: Sequence[Event]) -> int:
        """Validates the whole batch first (all or nothing), then appends every event to its
        user's list and to the stream in one atomic script. Returns after Redis acknowledged."""
        items = self._check_batch(events)
        if not events:
            return 0
        keys = [self.stream_key, *(self.user_key(e.user_id) for e in events)]
        args: list[str] = [self.bundle_version]
        for e in events:
            args += [e.user_id, e.item_id, e.kind.value, str(e.timestamp), repr(float(e.rating)),
                     repr(float(e.value)), self._list_entry(e)]  # fmt: skip
        with redis_errors():
            self._apply(keys=keys, args=args)
        with self._lock:
            self.events_applied += len(events)
            self.unknown_item_events += items.count(0)
        return len(events)

    # --- items added at runtime: shared in Redis, mirrored in self.registry ------------------

    def submit_items(self, items: Sequence[NewItem]) -> Future:
        """add_items on a worker thread; a bad batch raises InvalidArgument right here."""
        self._check_new_items(items)
        return self._writer.submit(self.add_items, items)

    def add_items(self, items: Sequence[NewItem]) -> list[AddedItem]:
        """Upsert in Redis (atomic, acknowledged = durable as for events), then pull the
        registry's changes so rows are computed over every replica's adds."""
        self._check_new_items(items)
        with redis_errors():
            entries = self._items.upsert(items)
        self.sync_registry()
        catalog = self.catalog
        return [self._with_row(e, catalog) for e in entries]

    def list_added_items(self, after: int, limit: int) -> tuple[list[AddedItem], int]:
        self.sync_registry()
        with self._lock:
            entries, change = self.registry.changed_after(after, limit), self.registry.change
            catalog = self.catalog
        return [self._with_row(e, catalog) for e in entries], change

    def sync_registry(self) -> bool:
        """Pull every registry entry changed since the last pull (all pages first: ordinals
        arrive in change order, so rows are recomputed only once the pull is complete);
        -> whether anything changed."""
        with self._lock:
            after = self.registry.change
        pulled: list[AddedItem] = []
        while True:
            with redis_errors():
                page = self._items.changed_after(after, SYNC_BATCH)
            if not page:
                break
            pulled += page
            after = page[-1].change
        if not pulled:
            return False
        with self._lock:
            for entry in pulled:
                current = self.registry.get(entry.item.item_id)
                if current is None or entry.change > current.change:
                    self.registry.put(entry)
            self._registry_changed()
        return True

    def _check_batch(self, events: Sequence[Event]) -> list[int]:
        """An event on an item this replica has not seen added yet (another replica added
        it): pull the registry once and look again."""
        items = super()._check_batch(events)
        if 0 in items and self.sync_registry():
            items = super()._check_batch(events)
        return items

    def get_items(self, item_ids: Sequence[str]) -> list[ItemInfo]:
        try:
            return super().get_items(item_ids)
        except NotFound:
            if not self.sync_registry():
                raise
            return super().get_items(item_ids)

    def _records_of(self, user_ids: Sequence[str]) -> list[UserRecord | None]:
        with self._lock:
            cached = [self._cache.get(u) for u in user_ids]
            for user_id, folded in zip(user_ids, cached, strict=True):
                if folded is not None:
                    self._cache.move_to_end(user_id)
        starts = [0 if c is None else c.count - 1 for c in cached]
        replies = self._lrange(user_ids, starts)
        out: list[UserRecord | None] = []
        for user_id, folded, entries in zip(user_ids, cached, replies, strict=True):
            if folded is not None and (not entries or entries[0] != folded.last):
                self._forget(user_id)  # the list was reset or replaced: read it all again
                folded, entries = None, self._lrange([user_id], [0])[0]
            out.append(self._fold(user_id, folded, entries))
        return out

    def _lrange(self, user_ids: Sequence[str], starts: Sequence[int]) -> list[list[str]]:
        with redis_errors():
            if len(user_ids) == 1:
                return [self._client.lrange(self.user_key(user_ids[0]), starts[0], -1)]
            pipe = self._client.pipeline(transaction=False)
            for user_id, start in zip(user_ids, starts, strict=True):
                pipe.lrange(self.user_key(user_id), start, -1)
            return pipe.execute()

    def _fold(self, user_id: str, folded: _Folded | None, entries: list[str]) -> UserRecord | None:
        if folded is None:
            base, count, new = self._records.get(user_id), 0, entries
        else:
            base, count, new = folded.record, folded.count, entries[1:]
        if not new:
            return base
        live = new
        if self.stream_position is not None:  # the bundle holds the events up to it already
            live = [e for e in new if entry_stream_id(e) > self.stream_position]
        if not live:
            self._remember(user_id, _Folded(base, count + len(new), new[-1]))
            return base
        record = base.copy() if base is not None else UserRecord.empty(self.spec.history_len)
        parts = [e.split(" ", 3) for e in live]
        items = self.catalog.indices([p[3] for p in parts])
        if (items == 0).any() and self.sync_registry():  # maybe added by another replica
            items = self.catalog.indices([p[3] for p in parts])
        days, times, kinds = zip(*(_when(p[1]) for p in parts), strict=True)
        record.apply_many(items, days, [float(p[2]) for p in parts], times, kinds)
        self._remember(user_id, _Folded(record, count + len(new), new[-1]))
        return record

    def _remember(self, user_id: str, folded: _Folded) -> None:
        with self._lock:
            self._cache[user_id] = folded
            self._cache.move_to_end(user_id)
            while len(self._cache) > self._cache_users:
                self._cache.popitem(last=False)

    def _forget(self, user_id: str) -> None:
        with self._lock:
            self._cache.pop(user_id, None)
