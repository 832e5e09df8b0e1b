"""One log line per record, JSON (default) or key=value, with the service name on every line.

The request id of the RPC being served (services.platform.interceptors sets it from the
`x-request-id` metadata, or makes one up) is on every line logged while serving it.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time

REQUEST_ID: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")
_base_factory = logging.getLogRecordFactory()


def _record_with_request_id(*args: object, **kwargs: object) -> logging.LogRecord:
    """Stamps the serving RPC's request id on the record when it is created (not when it is
    formatted, which may happen later or elsewhere)."""
    record = _base_factory(*args, **kwargs)
    request_id = REQUEST_ID.get()
    if request_id:
        record.request_id = request_id
    return record


logging.setLogRecordFactory(_record_with_request_id)

_RESERVED = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


def _extra_fields(record: logging.LogRecord) -> dict[str, object]:
    return {k: v for k, v in record.__dict__.items() if k not in _RESERVED}


def _timestamp(record: logging.LogRecord) -> str:
    base = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{base}.{int(record.msecs):03d}Z"


class _RecordFormatter(logging.Formatter):
    """Turns a record into the fields every recserve log line carries."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self._service = service

    def fields(self, record: logging.LogRecord) -> dict[str, object]:
        entry: dict[str, object] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "service": self._service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_extra_fields(record),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return entry


class JsonFormatter(_RecordFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(self.fields(record), default=str)


class KeyValueFormatter(_RecordFormatter):
    def format(self, record: logging.LogRecord) -> str:
        # json.dumps quotes and escapes values (newlines included): one record, one line.
        return " ".join(f"{k}={json.dumps(v, default=str)}" for k, v in self.fields(record).items())


def setup_logging(service_name: str, level: str | int = "INFO", fmt: str = "json") -> None:
    """Configure the root logger: one line per record on stderr. fmt is "json" or "text"."""
    if fmt not in ("json", "text"):
        raise ValueError(f"log format must be 'json' or 'text', got {fmt!r}")
    handler = logging.StreamHandler(sys.stderr)
    formatter = JsonFormatter if fmt == "json" else KeyValueFormatter
    handler.setFormatter(formatter(service_name))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # grpc's own DEBUG output is one line per event-loop poll: keep it out of RPC debugging.
    logging.getLogger("grpc").setLevel(max(root.level, logging.INFO))
    logging.getLogger("asyncio").setLevel(max(root.level, logging.INFO))
