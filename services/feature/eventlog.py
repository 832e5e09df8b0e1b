"""Append-only, CRC-framed event log with group commit (no grpc, no pickle).

Layout: `<dir>/<segment:020d>.log` files, each starting with the 8-byte magic `RSEVLOG1`, then
records. A record is one acknowledged ApplyEvents batch:

    payload_len u32 | payload_crc32 u32 | header_crc32 u32 (of the first 8 bytes) | payload

All integers little-endian. `encode_events`/`decode_events` define the payload (see
docs/feedback.md). Appends go through one writer thread: it takes whatever appends are queued
(waiting at most `group_delay_s` for more, at most `group_max_records` per group), writes them
and covers them with one fsync (mode "group"); "always" fsyncs after every record, "off" only
hands the bytes to the OS (survives a process crash, not a power cut). Each append returns a
concurrent.futures.Future resolved with the record's end position once it is durable.

On open, a torn tail of the last segment (a record cut short by a crash, or trailing zeros) is
truncated; damage anywhere else raises LogCorruptError naming the file and offset.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from services.contract.added_items import NewItem
from services.contract.errors import ConfigError, InvalidArgument, Unavailable
from services.contract.types import Event, EventKind

log = logging.getLogger(__name__)

MAGIC = b"RSEVLOG1"
_HEADER = struct.Struct("<III")  # payload_len, payload_crc, header_crc
_LEN_CRC = struct.Struct("<II")
MAX_RECORD_BYTES = 64 << 20
FSYNC_MODES = ("group", "always", "off")
_SUFFIX = ".log"


class LogCorruptError(ConfigError):
    """A record before the tail of the log is damaged: refuse to start rather than lose data."""


class LogPosition(NamedTuple):
    """(segment number, byte offset): records are ordered by it."""

    segment: int
    offset: int


@dataclass(frozen=True)
class LogSettings:
    directory: Path
    fsync: str = "group"
    group_delay_s: float = 0.0
    group_max_records: int = 512
    segment_bytes: int = 64 << 20

    def __post_init__(self) -> None:
        if self.fsync not in FSYNC_MODES:
            raise ConfigError(f"fsync mode {self.fsync!r} must be one of {FSYNC_MODES}")


# --- payload: one batch of events ----------------------------------------------------------

_KINDS: tuple[EventKind, ...] = tuple(EventKind)
_KIND_CODE = {kind: code for code, kind in enumerate(_KINDS)}
_COUNT = struct.Struct("<I")
_EVENT = struct.Struct("<BqddHH")  # kind, timestamp, rating, value, len(user), len(item)
MAX_ID_BYTES = 0xFFFF


def encode_events(events: Sequence[Event]) -> bytes:
    parts = [_COUNT.pack(len(events))]
    for e in events:
        user, item = e.user_id.encode(), e.item_id.encode()
        if len(user) > MAX_ID_BYTES or len(item) > MAX_ID_BYTES:
            raise InvalidArgument(
                f"event for user {e.user_id[:40]!r}: an id over {MAX_ID_BYTES} bytes"
            )
        parts.append(
            _EVENT.pack(_KIND_CODE[e.kind], e.timestamp, e.rating, e.value, len(user), len(item))
        )
        parts.append(user)
        parts.append(item)
    return b"".join(parts)


def decode_events(payload: bytes) -> list[Event]:
    (count,) = _COUNT.unpack_from(payload, 0)
    pos, events = _COUNT.size, []
    for _ in range(count):
        code, ts, rating, value, ulen, ilen = _EVENT.unpack_from(payload, pos)
        pos += _EVENT.size
        user = payload[pos : pos + ulen].decode()
        item = payload[pos + ulen : pos + ulen + ilen].decode()
        pos += ulen + ilen
        events.append(Event(user, item, _KINDS[code], ts, rating, value))
    if pos != len(payload):
        raise ValueError(f"{len(payload) - pos} trailing bytes after {count} events")
    return events


# A second record kind: an upsert of items added at runtime (services.feature.registry). Its
# payload starts with a count no event batch can have (batches hold at most a few thousand
# events), then UTF-8 JSON: [{"id", "title", "tags", "description", ["embedding"]}, ...]
# (records written before proxies were dropped also carry a proxy row: ignored on reading).
ITEMS_MARK = b"\xff\xff\xff\xffITEMS1"


def encode_items(items: Sequence[NewItem]) -> bytes:
    body = json.dumps([i.to_json() for i in items], ensure_ascii=False).encode()
    return ITEMS_MARK + body


def is_items_record(payload: bytes) -> bool:
    return payload.startswith(ITEMS_MARK)


def decode_items(payload: bytes) -> list[NewItem]:
    return [NewItem.from_json(o) for o in json.loads(payload[len(ITEMS_MARK) :].decode())]


def decode_record(payload: bytes) -> list[Event] | ItemsRecord:
    """An event batch, or an items upsert (wrapped, so callers can tell them apart)."""
    if is_items_record(payload):
        return ItemsRecord(decode_items(payload))
    return decode_events(payload)


class ItemsRecord(NamedTuple):
    items: list[NewItem]


def frame(payload: bytes) -> bytes:
    len_crc = _LEN_CRC.pack(len(payload), zlib.crc32(payload))
    return len_crc + struct.pack("<I", zlib.crc32(len_crc)) + payload


# --- reading -------------------------------------------------------------------------------


def segment_path(directory: Path, segment: int) -> Path:
    return directory / f"{segment:020d}{_SUFFIX}"


def list_segments(directory: Path) -> list[int]:
    if not directory.is_dir():
        return []
    return sorted(int(p.stem) for p in directory.glob(f"*{_SUFFIX}") if p.stem.isdigit())


class _Scan(NamedTuple):
    records: list[tuple[int, int]]  # (payload offset, payload length)
    good_end: int  # offset just after the last good record
    torn: bool  # bytes after good_end that are a torn tail


def _scan(path: Path, data: bytes, start: int, last: bool) -> _Scan:
    """Validate records from `start`; a damaged tail is torn only in the last segment."""
    if data[: len(MAGIC)] != MAGIC:
        if last and len(data) < len(MAGIC) and MAGIC.startswith(data):
            return _Scan([], 0, True)  # crashed while creating the segment
        raise LogCorruptError(f"event log {path}: bad magic at offset 0")
    records, pos, size = [], max(start, len(MAGIC)), len(data)
    while pos < size:
        problem = _check_record(data, pos)
        if problem is None:
            length = _HEADER.unpack_from(data, pos)[0]
            records.append((pos + _HEADER.size, length))
            pos += _HEADER.size + length
            continue
        torn = problem == "torn" or (problem == "zeros" and not any(data[pos:]))
        if last and torn:
            return _Scan(records, pos, True)
        raise LogCorruptError(f"event log {path}: corrupt record at offset {pos} ({problem})")
    return _Scan(records, pos, False)


def _check_record(data: bytes, pos: int) -> str | None:
    """None if the record at pos is intact, else why: 'torn' (cut short by the end of the
    file), 'zeros' (bad header: torn only if all zeros to the end) or a corruption."""
    if pos + _HEADER.size > len(data):
        return "torn"
    length, crc, header_crc = _HEADER.unpack_from(data, pos)
    if zlib.crc32(data[pos : pos + _LEN_CRC.size]) != header_crc or length > MAX_RECORD_BYTES:
        return "zeros"
    end = pos + _HEADER.size + length
    if end > len(data):
        return "torn"
    if zlib.crc32(data[pos + _HEADER.size : end]) != crc:
        return "torn" if end == len(data) else "payload checksum mismatch"
    return None


def read_records(
    directory: Path, start: LogPosition | None = None
) -> Iterator[tuple[LogPosition, bytes]]:
    """Yield (end position, payload) of every record at or after `start`, in log order.

    A torn tail of the last segment is skipped (not repaired: EventLog does that on open)."""
    directory = Path(directory)
    segments = list_segments(directory)
    for i, segment in enumerate(segments):
        if start is not None and segment < start.segment:
            continue
        offset = start.offset if start is not None and segment == start.segment else 0
        path = segment_path(directory, segment)
        data = path.read_bytes()
        scan = _scan(path, data, offset, last=i == len(segments) - 1)
        for payload_at, length in scan.records:
            yield LogPosition(segment, payload_at + length), data[payload_at : payload_at + length]


def read_events(
    directory: Path, start: LogPosition | None = None
) -> Iterator[tuple[LogPosition, list[Event]]]:
    """Event batches only (items records skipped: training reads feedback through this)."""
    for end, payload in read_records(directory, start):
        if not is_items_record(payload):
            yield end, decode_events(payload)


def read_log(
    directory: Path, start: LogPosition | None = None
) -> Iterator[tuple[LogPosition, list[Event] | ItemsRecord]]:
    """Every record, event batches and items upserts alike, in log order."""
    for end, payload in read_records(directory, start):
        yield end, decode_record(payload)


# --- writing -------------------------------------------------------------------------------

OnDurable = Callable[[LogPosition], None]


class _Append(NamedTuple):
    data: bytes
    future: Future
    on_durable: OnDurable | None


_STOP = object()


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class EventLog:
    """The single writer of one log directory (an exclusive lock file guards it)."""

    def __init__(self, settings: LogSettings) -> None:
        self.settings = settings
        self.directory = Path(settings.directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock_fd = os.open(self.directory / "LOCK", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self._lock_fd)
            raise ConfigError(
                f"event log {self.directory} is in use by another feature store"
            ) from None
        self.fsyncs = 0
        self.records = 0
        self.groups = 0
        self.truncated_bytes = 0
        self._failed: Exception | None = None
        self._closed = False
        self._state_lock = threading.Lock()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._segment, self._size = self._recover()
        self._fd = os.open(segment_path(self.directory, self._segment), os.O_WRONLY | os.O_APPEND)
        self._thread = threading.Thread(target=self._run, name="event-log-writer", daemon=True)
        self._thread.start()

    # -- open / recovery
    def _recover(self) -> tuple[int, int]:
        segments = list_segments(self.directory)
        if not segments:
            return self._create_segment(1), len(MAGIC)
        for segment in segments[:-1]:  # raise on damage before the tail
            path = segment_path(self.directory, segment)
            _scan(path, path.read_bytes(), 0, last=False)
        last = segments[-1]
        path = segment_path(self.directory, last)
        data = path.read_bytes()
        scan = _scan(path, data, 0, last=True)
        if scan.torn:
            self.truncated_bytes = len(data) - scan.good_end
            log.warning(
                "event log %s: truncated a torn tail of %d bytes at offset %d",
                path, self.truncated_bytes, scan.good_end,
            )  # fmt: skip
            if scan.good_end < len(MAGIC):
                path.unlink()
                return self._create_segment(last), len(MAGIC)
            with open(path, "r+b") as fh:
                fh.truncate(scan.good_end)
                os.fsync(fh.fileno())
        return last, scan.good_end

    def _create_segment(self, segment: int) -> int:
        path = segment_path(self.directory, segment)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            os.write(fd, MAGIC)
            if self.settings.fsync != "off":
                os.fsync(fd)
        finally:
            os.close(fd)
        if self.settings.fsync != "off":
            _fsync_dir(self.directory)
        return segment

    # -- public
    @property
    def end(self) -> LogPosition:
        """Position after the last record written (durable once its future resolved)."""
        return LogPosition(self._segment, self._size)

    def append(self, payload: bytes, on_durable: OnDurable | None = None) -> Future:
        """Queue one record; the future resolves with its end position once durable.
        `on_durable(position)` runs on the writer thread, in log order, before that."""
        if len(payload) > MAX_RECORD_BYTES:
            raise InvalidArgument(f"record of {len(payload)} bytes; at most {MAX_RECORD_BYTES}")
        future: Future = Future()
        with self._state_lock:  # nothing can be queued behind the writer's stop marker
            if self._closed or self._failed is not None:
                raise Unavailable(f"event log {self.directory} is closed or failed: {self._failed}")
            self._queue.put(_Append(frame(payload), future, on_durable))
        return future

    def close(self) -> None:
        """Commit what is queued, stop the writer and release the directory."""
        with self._state_lock:
            if self._closed:
                return
            self._closed = True
            self._queue.put(_STOP)
        self._thread.join()
        os.close(self._fd)
        os.close(self._lock_fd)

    # -- writer thread
    def _run(self) -> None:
        stopping = False
        while not stopping:
            item = self._queue.get()
            if item is _STOP:
                break
            group = [item]
            deadline = time.monotonic() + self.settings.group_delay_s
            while len(group) < self.settings.group_max_records:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        break
                    try:
                        item = self._queue.get(timeout=remaining)
                    except queue.Empty:
                        break
                if item is _STOP:
                    stopping = True
                    break
                group.append(item)
            self._commit(group)

    def _commit(self, group: list[_Append]) -> None:
        if self._failed is not None:
            for entry in group:
                entry.future.set_exception(Unavailable(f"event log failed: {self._failed}"))
            return
        mode = self.settings.fsync
        ends: list[LogPosition] = []
        try:
            for entry in group:
                if self._size + len(entry.data) > self.settings.segment_bytes and self._size > len(
                    MAGIC
                ):
                    self._rotate()
                _write_all(self._fd, entry.data)
                self._size += len(entry.data)
                if mode == "always":
                    os.fsync(self._fd)
                    self.fsyncs += 1
                ends.append(LogPosition(self._segment, self._size))
            if mode == "group":
                os.fsync(self._fd)
                self.fsyncs += 1
        except OSError as exc:  # disk full, I/O error: nothing in this group is acknowledged
            self._failed = exc
            log.error("event log %s: write failed: %s", self.directory, exc)
            for entry in group:
                entry.future.set_exception(Unavailable(f"event log write failed: {exc}"))
            return
        self.records += len(group)
        self.groups += 1
        for entry, end in zip(group, ends, strict=True):
            try:
                if entry.on_durable is not None:
                    entry.on_durable(end)
            except Exception as exc:  # handed to the waiting caller
                entry.future.set_exception(exc)
            else:
                entry.future.set_result(end)

    def _rotate(self) -> None:
        if self.settings.fsync != "off":
            os.fsync(self._fd)
            self.fsyncs += 1
        os.close(self._fd)
        self._segment = self._create_segment(self._segment + 1)
        self._size = len(MAGIC)
        self._fd = os.open(segment_path(self.directory, self._segment), os.O_WRONLY | os.O_APPEND)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def delete_segments_before(directory: Path, segment: int) -> list[int]:
    """Remove whole segments numbered below `segment` (covered by a snapshot)."""
    removed = [s for s in list_segments(Path(directory)) if s < segment]
    for s in removed:
        segment_path(Path(directory), s).unlink()
    return removed
