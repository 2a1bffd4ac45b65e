"""One line per request answered (``log.access``), HTTP and gRPC alike, on the logger keel.access.

Off by default: a busy server answers tens of thousands of requests a second, and
with it off a request pays one attribute test. A line names the method (a gRPC
method's name), the path, the status (the HTTP status; gRPC's code name), the
answer's bytes, the time from the request read to the answer made, and, where
known, the model, the version that answered, the request id (the X-Request-Id
header; a gRPC request's ``id``) and the trace id (the W3C ``traceparent`` header
or metadata). In JSON each is a field of its own (``keel.log_output``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

log = logging.getLogger("keel.access")

# version "-" trace id "-" parent id "-" flags, lower-case hex (W3C Trace Context).
_TRACEPARENT = re.compile(r"[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}")
_NO_TRACE = "0" * 32


def trace_id_of(traceparent: str | None) -> str | None:
    """The trace id a W3C ``traceparent`` value carries; None if it carries none valid."""
    if traceparent is None:
        return None
    found = _TRACEPARENT.fullmatch(traceparent.strip())
    if found is None or found[1] == _NO_TRACE:
        return None
    return found[1]


def header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> str | None:
    """A request header's value (``name`` in lower case), decoded; None if absent."""
    for key, value in headers:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def request_line(
    *,
    protocol: str,
    method: str,
    path: str,
    status: int | str,
    size: int,
    seconds: float,
    model: str | None = None,
    version: str | None = None,
    request_id: str | None = None,
    trace_id: str | None = None,
) -> None:
    """Log one answered request."""
    duration_ms = round(seconds * 1000, 3)
    known = {"model": model, "version": version, "request_id": request_id, "trace_id": trace_id}
    words = "".join(f" {key}={value}" for key, value in known.items() if value is not None)
    log.info(
        "%s %s %s %s %dB %.3fms%s",
        protocol,
        method,
        path,
        status,
        size,
        duration_ms,
        words,
        extra={
            "protocol": protocol,
            "method": method,
            "path": path,
            "status": status,
            "bytes": size,
            "duration_ms": duration_ms,
            **known,
        },
    )
