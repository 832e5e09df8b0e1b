"""The version-independent Redis layout of live user state, and the one-time rebuild of the user
lists from the event stream (docs/feature_store.md, "Data layout in Redis").

    {prefix}:user:{user_id}   LIST    one entry per live event, stream order:
                                      "<stream id> <day>:<ts>:<kind> <activity value>
                                      <item_id>" (older entries: "<day>" alone)
    {prefix}:events           STREAM  every event (the durable log)
    {prefix}:layout           STRING  "2" once the user lists above are complete
    {prefix}:layout:lock      STRING  held (SET NX PX, refreshed) by the replica rebuilding them

A store for bundle V folds the entries of a list whose stream id is after the stream position
V was retrained on (manifest data.split.feedback_stream, `bundle_stream_position`; no position:
every entry), so lists outlive bundles and a new bundle loses nothing applied under an old one.

Deployments of the previous layout (lists keyed per bundle version) have no marker: the first
replica to connect rebuilds the user lists from the stream (chunked XRANGE), appending an entry
only when its stream id is after the last one already in the list (idempotent: a rebuild that
dies half-way is simply run again, and two rebuilders cannot duplicate an entry). The marker is
set in the same script that checks the stream has nothing left, so no event is between the last
chunk and the marker. Other replicas wait for the marker meanwhile.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from services.contract.bundle import Bundle
from services.contract.errors import BundleError, Unavailable

log = logging.getLogger(__name__)

LAYOUT = "2"  # user lists keyed without the bundle version
BUNDLE_STREAM_KEY = "feedback_stream"  # manifest data.split[...] = "<stream id>"
REBUILD_CHUNK = 1_000
LOCK_TTL_MS = 30_000
WAIT_S = 300.0

StreamId = tuple[int, int]
_STREAM_ID = re.compile(r"^(\d+)(?:-(\d+))?$")

# KEYS = user lists; ARGV = one entry per key ("<stream id> ..."). Appends an entry only when its
# stream id is after the last entry's in the list: replaying the stream twice changes nothing.
_APPEND_IF_NEWER_LUA = """
local function sid(s)
  local ms, seq = string.match(s, '^(%d+)-(%d+)')
  return tonumber(ms), tonumber(seq)
end
local added = 0
for i = 1, #KEYS do
  local last = redis.call('LINDEX', KEYS[i], -1)
  local newer = true
  if last then
    local ms, seq = sid(ARGV[i])
    local lms, lseq = sid(last)
    newer = ms > lms or (ms == lms and seq > lseq)
  end
  if newer then
    redis.call('RPUSH', KEYS[i], ARGV[i])
    added = added + 1
  end
end
return added
"""

# KEYS[1] = stream, KEYS[2] = marker, KEYS[3] = lock; ARGV[1] = last stream id rebuilt ("0-0"
# for none), ARGV[2] = layout, ARGV[3] = lock token. Sets the marker only if nothing is left.
_FINISH_LUA = """
if #redis.call('XRANGE', KEYS[1], '(' .. ARGV[1], '+', 'COUNT', 1) > 0 then
  return 0
end
redis.call('SET', KEYS[2], ARGV[2])
if redis.call('GET', KEYS[3]) == ARGV[3] then
  redis.call('DEL', KEYS[3])
end
return 1
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
return 0
"""


def parse_stream_id(text: str) -> StreamId:
    """A stream id "<ms>-<seq>" (or "<ms>": seq 0) -> (ms, seq), ordered as Redis orders them."""
    match = _STREAM_ID.match(text)
    if match is None:
        raise ValueError(f"not a Redis stream id: {text!r}")
    return int(match[1]), int(match[2] or 0)


def entry_stream_id(entry: str) -> StreamId:
    """The stream id of a user-list entry "<stream id> <day>... <value> <item>"."""
    return parse_stream_id(entry.split(" ", 1)[0])


def bundle_stream_position(bundle: Bundle) -> StreamId | None:
    """The stream prefix a bundle was retrained on (manifest data.split.feedback_stream; its
    interactions already hold those events): a store folds only list entries after it. None
    (today's retraining reads no stream): every entry is live."""
    entry: Any = bundle.manifest.get("data", {}).get("split", {}).get(BUNDLE_STREAM_KEY)
    if entry is None or entry == "":
        return None
    try:
        return parse_stream_id(str(entry))
    except ValueError:
        raise BundleError(
            f"bundle {bundle.version}: data.split.{BUNDLE_STREAM_KEY} = {entry!r} is not a "
            "Redis stream id"
        ) from None


@dataclass(frozen=True, slots=True)
class Rebuild:
    """What a rebuild of the user lists did."""

    events: int  # stream entries read
    appended: int  # list entries written (the rest were there already)
    users: int
    skipped: int  # stream entries that are not events (missing or bad fields)
    trimmed: int  # entries once added to the stream and gone now (XTRIM / XDEL)
    seconds: float


def layout_keys(prefix: str) -> tuple[str, str]:
    return f"{prefix}:layout", f"{prefix}:layout:lock"


def ensure_user_lists(
    client: redis.Redis,
    prefix: str,
    stream_key: str,
    user_key: Callable[[str], str],
    entry_of: Callable[[str, Mapping[str, str]], str | None],
    *,
    chunk: int = REBUILD_CHUNK,
    lock_ttl_ms: int = LOCK_TTL_MS,
    wait_s: float = WAIT_S,
) -> Rebuild | None:
    """Make sure the user lists of this layout are complete: nothing to do when the marker is
    there; else rebuild them from the stream (one replica, under the lock) or wait for the
    replica that is rebuilding them. -> what this call rebuilt (None: nothing).

    entry_of(stream id, fields) -> the list entry, or None for an entry that is not an event."""
    marker, lock = layout_keys(prefix)
    deadline = time.monotonic() + wait_s
    logged = False
    while True:
        if client.get(marker) == LAYOUT:
            return None
        token = uuid.uuid4().hex
        if client.set(lock, token, nx=True, px=lock_ttl_ms):
            if client.get(marker) == LAYOUT:  # finished between our GET and SET: let go
                _release(client, lock, token)
                return None
            return _rebuild(client, prefix, stream_key, user_key, entry_of, token, chunk,
                            lock_ttl_ms)  # fmt: skip
        if not logged:
            log.info("waiting for another replica to rebuild the Redis user lists (%s)", prefix)
            logged = True
        if time.monotonic() > deadline:
            raise Unavailable(
                f"Redis user lists under {prefix!r} are being rebuilt by another replica for "
                f"more than {wait_s:.0f}s ({lock} held)"
            )
        time.sleep(0.05)


def _rebuild(
    client: redis.Redis,
    prefix: str,
    stream_key: str,
    user_key: Callable[[str], str],
    entry_of: Callable[[str, Mapping[str, str]], str | None],
    token: str,
    chunk: int,
    lock_ttl_ms: int,
) -> Rebuild:
    marker, lock = layout_keys(prefix)
    started = time.monotonic()
    append = client.register_script(_APPEND_IF_NEWER_LUA)
    finish = client.register_script(_FINISH_LUA)
    trimmed = _trimmed(client, stream_key)
    if trimmed:
        log.warning(
            "Redis stream %s lost %d entries to XTRIM/XDEL before this rebuild: their events "
            "are only in the previous layout's lists (%s:<version>:user:*), not carried over",
            stream_key, trimmed, prefix,
        )  # fmt: skip
    last, events, appended, skipped = "0-0", 0, 0, 0
    users: set[str] = set()
    while True:
        page = client.xrange(stream_key, min=f"({last}", count=chunk)  # no stream id is 0-0
        if not page:
            if finish(keys=[stream_key, marker, lock], args=[last, LAYOUT, token]):
                break
            continue
        keys, entries = [], []
        for stream_id, fields in page:
            entry = entry_of(stream_id, fields)
            if entry is None:
                skipped += 1
                continue
            keys.append(user_key(fields["user"]))
            entries.append(entry)
            users.add(fields["user"])
        if keys:
            appended += int(append(keys=keys, args=entries))
        events += len(keys)
        last = page[-1][0]
        client.pexpire(lock, lock_ttl_ms)
    done = Rebuild(events, appended, len(users), skipped, trimmed, time.monotonic() - started)
    log.log(
        logging.WARNING if events or skipped else logging.INFO,
        "Redis layout %s: no marker %s, user lists rebuilt from stream %s: %d events (%d list "
        "entries appended, %d users, %d stream entries skipped) in %.1fs",
        LAYOUT, marker, stream_key, done.events, done.appended, done.users, done.skipped,
        done.seconds,
    )  # fmt: skip
    return done


def _release(client: redis.Redis, lock: str, token: str) -> None:
    """Delete the lock if it is still ours (one that expired and was taken since is not)."""
    client.eval(_RELEASE_LUA, 1, lock, token)


def _trimmed(client: redis.Redis, stream_key: str) -> int:
    """Entries added to the stream and removed since (XINFO entries-added, Redis >= 7.0)."""
    try:
        info = client.xinfo_stream(stream_key)
    except redis.ResponseError:  # no such key: nothing was ever added
        return 0
    added = info.get("entries-added")
    return max(0, int(added) - int(info["length"])) if added is not None else 0
