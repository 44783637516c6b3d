"""Log lines that say which request and stage they belong to, as text or as one JSON object per line.

The stage and request id live in context variables: each Faust agent task (and each of its concurrent copies) has
its own context, so a line logged anywhere below a stage, in agents/ or infra/, carries the message it is handling
without passing anything around. `GAPSTREAM_LOG_FORMAT=json` gives one JSON object per line on stderr, for log
shippers; every line has `request_id` and `stage` keys (null outside a message).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from datetime import datetime, timezone
from typing import Iterator, Optional

REQUEST_ID: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("gapstream_request_id", default=None)
STAGE: contextvars.ContextVar[Optional[str]] = contextvars.ContextVar("gapstream_stage", default=None)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(stage)s %(request_id)s]: %(message)s"
FORMATS = ("text", "json")


@contextlib.contextmanager
def bound(stage: Optional[str] = None, request_id: Optional[str] = None) -> Iterator[None]:
    """Every line logged inside the block carries this stage and request id."""
    tokens = []
    if stage is not None:
        tokens.append((STAGE, STAGE.set(stage)))
    if request_id is not None:
        tokens.append((REQUEST_ID, REQUEST_ID.set(request_id)))
    try:
        yield
    finally:
        for var, token in reversed(tokens):
            var.reset(token)


class ContextFilter(logging.Filter):
    """Copies the context variables onto each record; on a handler, so third-party loggers' lines get them too."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = REQUEST_ID.get()
        if not hasattr(record, "stage"):
            record.stage = STAGE.get()
        return True


class TextContextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        # Outside a message both are None; a dash keeps the columns readable.
        saved = record.request_id, record.stage  # type: ignore[attr-defined]
        record.request_id = saved[0] or "-"
        record.stage = saved[1] or "-"
        try:
            return super().format(record)
        finally:
            record.request_id, record.stage = saved


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, timezone.utc).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
            "stage": getattr(record, "stage", None),
        }
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


_format = "text"


def announce(message: str, level: str = "INFO") -> None:
    """A status line for people (a worker started, stopped) on stderr: as is, or as a JSON log line in JSON mode,
    so a log shipper reading a worker's stderr sees nothing but JSON."""
    if _format == "json":
        record = logging.LogRecord("gapstream", getattr(logging, level), __file__, 0, message, None, None)
        ContextFilter().filter(record)
        message = JsonFormatter().format(record)
    print(message, file=sys.stderr, flush=True)


def configure(level: int, fmt: str = "text", stream: object = None) -> logging.Handler:
    """Replace the root logger's handlers with one stderr handler in the chosen format."""
    if fmt not in FORMATS:
        raise ValueError(f"log format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    handler = logging.StreamHandler(stream or sys.stderr)  # type: ignore[arg-type]
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextContextFormatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    global _format
    _format = fmt
    # Library warnings (torch, diffusers) would otherwise bypass the handler as raw text on stderr.
    logging.captureWarnings(fmt == "json")
    return handler
