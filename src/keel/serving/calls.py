"""One inference call as keel's handlers see it, and the answer every route gives.

The inference routes are the hot path: their handlers take a ``Call`` and return
a ``Reply`` instead of framework request and response objects, and a ``Reply`` is
what keel's HTTP server writes, whoever made it (the inference routes, the error
mapping, or a Starlette route through the ASGI bridge).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

VERSION_HEADER = "x-keel-model-version"
DEADLINE_HEADER = "x-keel-deadline-ms"
JSON = b"application/json"
BINARY = b"application/octet-stream"


# NamedTuples rather than frozen dataclasses: one of each is built per request, and a
# frozen dataclass's __init__ costs about three times as much.
class Call(NamedTuple):
    """A request to one model version: the headers keel reads, and the body."""

    headers: Mapping[str, str]
    body: bytes
    # time.perf_counter() when the request arrived: its latency, wherever it is counted.
    received_at: float
    # The request's span when it is traced (``keel.tracing``: an OpenTelemetry SDK span),
    # else None; the steps after the edge add theirs to it.
    span: Any = None


class Reply(NamedTuple):
    """A complete HTTP answer.

    ``content_type`` is written as Content-Type (none when empty); ``headers`` are the
    rest, never Content-Type, Content-Length, Connection or Date, which the server
    writes itself.
    """

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: Sequence[tuple[bytes, bytes]] = ()
