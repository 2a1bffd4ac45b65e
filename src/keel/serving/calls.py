"""One inference call as keel's handlers see it, and their answer, free of any web framework.

The inference routes are the hot path: they are served by ``inference_front``
straight from ASGI messages, so their handlers take a ``Call`` and return a
``Reply`` instead of framework request and response objects.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

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


class Reply(NamedTuple):
    """A complete HTTP answer; ``headers`` are extra to Content-Type and Content-Length."""

    status: int
    body: bytes
    content_type: bytes = JSON
    headers: Sequence[tuple[bytes, bytes]] = ()
