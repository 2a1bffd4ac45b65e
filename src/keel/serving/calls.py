"""One inference call as keel's handlers see it, and their answer, free of any web framework.

The inference routes are the hot path: they are served by ``inference_front``
straight from ASGI messages, so their handlers take a ``Call`` and return a
``Reply`` instead of framework request and response objects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

VERSION_HEADER = "x-keel-model-version"
DEADLINE_HEADER = "x-keel-deadline-ms"
JSON = b"application/json"
BINARY = b"application/octet-stream"


@dataclass(frozen=True, slots=True)
class Call:
    """A request to one model version: the headers keel reads, and the body."""

    headers: Mapping[str, str]
    body: bytes
    # time.perf_counter() when the request arrived: its latency, wherever it is counted.
    received_at: float


@dataclass(frozen=True, slots=True)
class Reply:
    """A complete HTTP answer; ``headers`` are extra to Content-Type and Content-Length."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
