"""Background sync of items added at runtime, shared by retrieval and the gateway.

A process that did not take an AddItems call itself (another gateway replica, a retrieval
process that restarted, a pipeline rebuilt by a hot reload) learns the item from the feature
service's registry: `ItemSync` pulls ListAddedItems(after=<highest change seen>) at start and
every RECSERVE_ITEM_SYNC_S seconds, pages until a page comes back empty, keeps a mirror of the
whole registry, and after each complete pull that changed something hands the *whole* mirror,
in ordinal order, to `apply`. Rows are computed from every entry (services.contract.added_items),
so consumers reconcile against their own state (retrieval: index what it lacks; gateway:
extend its catalog) and a failed or repeated round is harmless.

Off the request path (its own task); a failed round is logged, counted and retried with
exponential backoff up to MAX_BACKOFF_S; `stop()` cancels it. Domain-agnostic: the feature
service is reached through `list_fn`, so embedded mode pulls from its in-process store.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Awaitable, Callable

import grpc

from recserve.v1 import feature_pb2, feature_pb2_grpc
from services.contract.added_items import AddedItem
from services.contract.errors import ConfigError
from services.platform import convert, metrics
from services.platform.env import Env, env_float, env_str

log = logging.getLogger(__name__)

SYNC_ENV = "RECSERVE_ITEM_SYNC_S"
DEFAULT_INTERVAL_S = 5.0
PAGE_SIZE = 1_000
MAX_BACKOFF_S = 60.0
RPC_TIMEOUT_S = 10.0

# (after, limit) -> (entries changed after `after` in change order, the registry's change now)
ListFn = Callable[[int, int], Awaitable[tuple[list[AddedItem], int]]]
# every registry entry, in ordinal order -> None (may be sync or async)
ApplyFn = Callable[[list[AddedItem]], Awaitable[object] | object]


def sync_interval_from_env(env: Env | None = None) -> float:
    """RECSERVE_ITEM_SYNC_S: seconds between pulls (0 = off); ConfigError when out of range."""
    return env_float(SYNC_ENV, DEFAULT_INTERVAL_S, min_value=0.0, max_value=3_600.0, env=env)


def feature_addr_from_env(env: Env | None = None) -> str | None:
    """RECSERVE_FEATURE_ADDR, the feature service a process syncs the registry from (HOST:PORT;
    unset or empty = None: no sync); ConfigError when malformed."""
    address = env_str("RECSERVE_FEATURE_ADDR", "", env).strip()
    if not address:
        return None
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"RECSERVE_FEATURE_ADDR={address!r} must be HOST:PORT")
    return address


def grpc_list_fn(channel: grpc.aio.Channel, timeout_s: float = RPC_TIMEOUT_S) -> ListFn:
    """ListAddedItems over a channel to the feature service (make it with services.platform.
    security.aio_channel, so TLS and the internal API key apply)."""
    stub = feature_pb2_grpc.FeatureServiceStub(channel)

    async def list_items(after: int, limit: int) -> tuple[list[AddedItem], int]:
        request = feature_pb2.ListAddedItemsRequest(after=after, limit=limit)
        reply = await stub.ListAddedItems(request, timeout=timeout_s)
        return [convert.added_item_from_proto(m) for m in reply.items], int(reply.last_change)

    return list_items


def start_grpc_sync(
    feature_addr: str | None,
    interval_s: float,
    security,
    apply: ApplyFn,
    *,
    name: str,
) -> ItemSync | None:
    """A started ItemSync pulling the feature service at `feature_addr` over its own channel
    (TLS and the internal API key of `security`, services.platform.security.SecuritySettings);
    None when the address is unset or interval_s is 0. On the running loop. Retrieval and
    ranking sync this way."""
    if feature_addr is None or interval_s <= 0:
        log.info("%s: item sync off (RECSERVE_FEATURE_ADDR unset or RECSERVE_ITEM_SYNC_S=0)", name)
        return None
    from services.platform.security import aio_channel

    channel = aio_channel(
        feature_addr,
        tls=security.client_tls,
        api_key=security.outgoing_key,
        options=[("grpc.max_receive_message_length", 64 << 20)],
    )
    sync = ItemSync(
        grpc_list_fn(channel), apply, interval_s=interval_s, name=name, close=channel.close
    )
    sync.start()
    return sync


def store_list_fn(store: Callable[[], object]) -> ListFn:
    """ListAddedItems of the in-process feature store `store()` returns (embedded mode; a
    hot reload may replace the store), off the event loop (a Redis store does I/O there)."""

    async def list_items(after: int, limit: int) -> tuple[list[AddedItem], int]:
        return await asyncio.to_thread(store().list_added_items, after, limit)  # type: ignore[attr-defined]

    return list_items


class ItemSync:
    def __init__(
        self,
        list_fn: ListFn,
        apply: ApplyFn,
        *,
        interval_s: float = DEFAULT_INTERVAL_S,
        name: str = "item-sync",
        page_size: int = PAGE_SIZE,
        close: Callable[[], Awaitable[None]] | None = None,
    ) -> None:
        """close: awaited by stop() (e.g. the channel list_fn uses, when the sync owns it)."""
        self._list = list_fn
        self._apply = apply
        self.interval_s = interval_s
        self.name = name
        self.page_size = page_size
        self.change = 0  # highest change pulled
        self.rounds = 0  # complete rounds (tests wait on it)
        self.failures = 0  # consecutive failed rounds
        self._mirror: dict[int, AddedItem] = {}
        self._dirty = False  # pulled or asked for, not applied yet
        self._task: asyncio.Task | None = None
        self._wake: asyncio.Event | None = None
        self._close = close

    def entries(self) -> list[AddedItem]:
        """The mirror: every registry entry pulled so far, in ordinal order."""
        mirror = self._mirror.copy()  # atomic: a reload's build thread reads it too
        return [mirror[o] for o in sorted(mirror)]

    def __len__(self) -> int:
        return len(self._mirror)

    async def pull(self) -> int:
        """One round: page until empty, then apply when anything changed (or `resync` asked);
        -> entries pulled. Raises what list_fn or apply raise (the loop retries)."""
        pulled = 0
        while True:
            page, last_change = await self._list(self.change, self.page_size)
            if not page:
                if last_change < self.change:  # a registry that lost its state (not durable)
                    log.warning(
                        "%s: registry change counter went back (%d < %d): pulling it afresh",
                        self.name, last_change, self.change,
                    )  # fmt: skip
                    self._mirror.clear()
                    self.change = 0
                    continue
                break
            for entry in page:
                self._mirror[entry.ordinal] = entry
            self.change = max(self.change, max(e.change for e in page))
            pulled += len(page)
        if pulled:
            self._dirty = True
            metrics.ADDED_ITEMS_KNOWN.labels(self.name).set(len(self._mirror))
        if self._dirty:
            result = self._apply(self.entries())
            if inspect.isawaitable(result):
                await result
            self._dirty = False
        self.rounds += 1
        return pulled

    def resync(self) -> None:
        """Apply the whole mirror again on the next round, now (e.g. after a hot reload built
        new domain objects that may have missed entries pulled meanwhile)."""
        self._dirty = True
        if self._wake is not None:
            self._wake.set()

    def start(self) -> None:
        """Start pulling (first round now); a no-op when interval_s is 0. On the running loop."""
        if self.interval_s > 0 and self._task is None:
            self._wake = asyncio.Event()
            self._task = asyncio.get_running_loop().create_task(self._run())
            log.info("%s: pulling added items every %.1fs", self.name, self.interval_s)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._close is not None:
            await self._close()
            self._close = None

    async def _run(self) -> None:
        assert self._wake is not None
        while True:
            delay = self.interval_s
            try:
                pulled = await self.pull()
                if self.failures:
                    log.info("%s: registry reachable again", self.name)
                self.failures = 0
                if pulled:
                    log.info("%s: %d added items pulled (%d known)", self.name, pulled, len(self))
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the sync die: log, back off, retry
                self.failures += 1
                metrics.ITEM_SYNC_FAILURES.labels(self.name).inc()
                delay = min(MAX_BACKOFF_S, self.interval_s * 2 ** min(self.failures, 10))
                level = logging.WARNING if self.failures <= 3 else logging.DEBUG
                log.log(level, "%s: sync failed (%s: %s); retrying in %.1fs",
                        self.name, type(exc).__name__, _short(exc), delay)  # fmt: skip
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)


def _short(exc: Exception) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        return f"{exc.code().name} {exc.details() or ''}"[:200]
    return str(exc)[:200]
