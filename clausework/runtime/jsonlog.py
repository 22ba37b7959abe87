"""JSON logs on stderr, one object a line, so that log collectors can index them without parsing.

Besides `extra=` fields, a line carries the fields bound with `log_fields` around the code that logs
(e.g. the extraction and workflow id of the activity being run) and, when tracing is on, the ids of
the active trace and span, so a log line leads to its trace and back.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from clausework.runtime.telemetry import current_trace_ids

# Attributes every LogRecord has; anything else passed via `extra=` is emitted as a field.
_STANDARD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}

_bound: ContextVar[dict[str, Any]] = ContextVar("log_fields", default={})  # noqa: B039 -- never mutated


@contextmanager
def log_fields(**fields: Any) -> Iterator[None]:
    """Add `fields` to every log line written in this context (this task and those it starts)."""
    token = _bound.set({**_bound.get(), **fields})
    try:
        yield
    finally:
        _bound.reset(token)


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "msg": record.getMessage(),
            **_bound.get(),
        }
        ids = current_trace_ids()
        if ids is not None:
            entry["trace_id"], entry["span_id"] = ids
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str, level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Third-party chatter that would otherwise log request details at INFO.
    for noisy in ("botocore", "aiobotocore", "aioboto3", "urllib3", "httpx", "openai", "temporalio.activity"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
