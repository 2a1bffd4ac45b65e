"""How keel's log lines look: words for a terminal, or one JSON object per line for a collector.

Every process of a server (the supervisor, each worker, or the one process)
configures its log here, from ``log.format``. A JSON line holds ``time`` (UTC, RFC
3339 with milliseconds), ``level``, ``logger`` and ``message``, then whichever of
``FIELDS`` the event carries (passed as ``extra=``): the model, version, request
and trace it is about, a worker's index, an access line's method, path and status.
A failure's traceback goes in ``exception``, as one string, so a line stays a line.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

import orjson

from keel.settings import LogSettings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# The extra fields a JSON line carries when an event has them, in this order.
FIELDS = (
    "worker",
    "model",
    "version",
    "request_id",
    "trace_id",
    "protocol",
    "method",
    "path",
    "status",
    "bytes",
    "duration_ms",
)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def __init__(self, worker: int | None = None) -> None:
        super().__init__()
        self.worker = worker

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": datetime.datetime.fromtimestamp(record.created, datetime.UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if self.worker is not None:
            line["worker"] = self.worker
        fields = record.__dict__
        for key in FIELDS:
            value = fields.get(key)
            if value is not None:
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        try:
            return orjson.dumps(line, default=str).decode()
        except TypeError:
            # A message may hold a lone surrogate, which UTF-8 cannot spell.
            text = {k: v.encode("utf-8", "backslashreplace").decode() if isinstance(v, str) else v
                    for k, v in line.items()}  # fmt: skip
            return orjson.dumps(text, default=str).decode()


def configure(settings: LogSettings, process: str = "", worker: int | None = None) -> None:
    """Send INFO and above to standard error in ``settings.format``.

    ``process`` names the process in text lines ("supervisor", "worker 1"); ``worker`` is a
    worker's index, a field of its JSON lines.
    """
    handler = logging.StreamHandler()
    if settings.format == "json":
        handler.setFormatter(JsonFormatter(worker))
    else:
        prefix = f"{process} " if process else ""
        handler.setFormatter(
            logging.Formatter(TEXT_FORMAT.replace("%(name)s", prefix + "%(name)s"))
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.INFO)
