"""Load against a real server: loadgen's closed loop, and an open loop that keeps each answer.

``bench/loadgen.py`` counts statuses and pools all latencies; an overload test needs
them apart (the accepted requests' p99, how fast a refusal came, whether each 503 said
when to retry), so the open loop here answers per request. It reuses loadgen's request
encoding, response framing and percentiles. Request ``i`` is due at ``start + i / rate``
whatever the server does, and goes out on whichever keep-alive connection is free; when
none is, another is opened (up to a cap), as independent clients would. Latency counts
from the time a request was due, so a server that falls behind shows it.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import socket
import sys
import time
import typing
from dataclasses import dataclass
from pathlib import Path

import uvloop

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

from loadgen import (
    LoadResult,
    LoadSpec,
    collection_paused,
    content_length,
    encode_request,
    percentiles,
    run_load,
)

JSON_HEADERS = (("Content-Type", "application/json"),)

# After the schedule ends, requests already due are still sent for this long...
DRAIN_S = 15.0
# ...then none is, and those sent get this long to be answered.
SETTLE_S = 5.0


@dataclass(frozen=True)
class Answer:
    """One request's fate: its status (0 when its connection died), latency, Retry-After."""

    status: int
    latency_s: float
    """From when the request was due: what a client of an open system waits."""
    retry_after: str | None
    response_s: float
    """From when it was written: the server's part alone, without the generator's delays."""


@dataclass(frozen=True)
class OpenLoopRun:
    """What an open-loop run offered and what came back."""

    rate: float
    duration_s: float
    offered: int
    answers: tuple[Answer, ...]
    # Sent, and never answered.
    unanswered: int
    # Due, but never sent: every connection was busy until the drain ended.
    unsent: int
    peak_connections: int
    connect_errors: int

    def of_status(self, status: int) -> list[Answer]:
        return [answer for answer in self.answers if answer.status == status]

    def statuses(self) -> dict[int, int]:
        return dict(collections.Counter(answer.status for answer in self.answers))


def p99_ms(answers: list[Answer], *, from_written: bool = False) -> float:
    """The 99th percentile latency of ``answers`` in milliseconds (0 when there are none),
    counted from when each was due, or with ``from_written`` from when it was sent."""
    samples = [a.response_s if from_written else a.latency_s for a in answers]
    return percentiles(samples).get("p99", 0.0) / 1000


def retry_after_of(head: bytes) -> str | None:
    """The Retry-After header of a response head, or None."""
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"retry-after":
            return value.strip().decode("latin-1")
    return None


class _Schedule:
    """Due times not sent yet, the connections, and the answers so far."""

    def __init__(self, host: str, port: int, request: bytes, max_connections: int) -> None:
        self.host = host
        self.port = port
        self.request = request
        self.max_connections = max_connections
        self.loop = asyncio.get_running_loop()
        self.backlog: collections.deque[float] = collections.deque()
        self.idle: list[_Connection] = []
        self.pool: set[_Connection] = set()
        self.peak = 0
        self.connecting: set[asyncio.Task[None]] = set()
        self.connect_errors = 0
        self.answers: list[Answer] = []
        self.outstanding = 0
        self.sending = True

    def due(self, intended: float) -> None:
        if self.idle:
            self.idle.pop().send(intended)
            return
        self.backlog.append(intended)
        if len(self.pool) + len(self.connecting) < self.max_connections:
            task = self.loop.create_task(self._connect())
            self.connecting.add(task)
            task.add_done_callback(self.connecting.discard)

    async def _connect(self) -> None:
        try:
            _, connection = await self.loop.create_connection(
                lambda: _Connection(self), self.host, self.port
            )
        except OSError:
            self.connect_errors += 1
            return
        self.pool.add(connection)
        self.peak = max(self.peak, len(self.pool))
        self.free(connection)

    def free(self, connection: _Connection) -> None:
        if self.backlog and self.sending:
            connection.send(self.backlog.popleft())
        else:
            self.idle.append(connection)

    def lost(self, connection: _Connection) -> None:
        self.pool.discard(connection)
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)

    @property
    def pending(self) -> bool:
        return bool(self.outstanding or (self.backlog and self.sending))


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, schedule: _Schedule) -> None:
        self.schedule = schedule
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.intended = 0.0
        self.written = 0.0
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = typing.cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, intended: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.intended = intended
        self.schedule.outstanding += 1
        self.written = time.perf_counter()
        self.transport.write(self.schedule.request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end]
            total = end + 4 + content_length(head)
            if len(self.buffer) < total:
                return
            self.buffer = self.buffer[total:]
            self._answered(self._answer(int(head[9:12]), retry_after_of(head)))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy and self.schedule.sending:
            self._answered(self._answer(0, None), reuse=False)
        self.schedule.lost(self)

    def _answer(self, status: int, retry_after: str | None) -> Answer:
        now = time.perf_counter()
        return Answer(status, now - self.intended, retry_after, now - self.written)

    def _answered(self, answer: Answer, reuse: bool = True) -> None:
        self.schedule.answers.append(answer)
        self.schedule.outstanding -= 1
        self.busy = False
        if reuse:
            self.schedule.free(self)


async def _drive(
    url: str, body: bytes, rate: float, duration_s: float, max_connections: int
) -> OpenLoopRun:
    spec = LoadSpec(url, body, headers=JSON_HEADERS)
    schedule = _Schedule(*encode_request(spec), max_connections)
    total = int(rate * duration_s)
    started = time.perf_counter()
    for index in range(total):
        due = started + index / rate
        wait = due - time.perf_counter()
        if wait > 0.001:
            await asyncio.sleep(wait)
        elif index % 16 == 0:
            # Behind schedule: still let answers in now and then.
            await asyncio.sleep(0)
        schedule.due(due)
    await _wait(schedule, DRAIN_S)
    schedule.sending = False
    await _wait(schedule, SETTLE_S)
    unanswered, unsent = schedule.outstanding, len(schedule.backlog)
    for task in list(schedule.connecting):
        task.cancel()
    for connection in list(schedule.pool):
        if connection.transport is not None:
            connection.transport.close()
    await asyncio.sleep(0)
    return OpenLoopRun(
        rate,
        duration_s,
        total,
        tuple(schedule.answers),
        unanswered,
        unsent,
        schedule.peak,
        schedule.connect_errors,
    )


async def _wait(schedule: _Schedule, seconds: float) -> None:
    until = time.perf_counter() + seconds
    while schedule.pending and time.perf_counter() < until:
        await asyncio.sleep(0.01)


def open_loop(
    url: str, body: bytes, rate: float, duration_s: float, max_connections: int = 1024
) -> OpenLoopRun:
    """Offer ``rate`` requests a second for ``duration_s`` seconds; blocks until answered.

    Connections are opened as requests find none free, up to ``max_connections``.
    """
    with collection_paused():
        return uvloop.run(_drive(url, body, rate, duration_s, max_connections))


def closed_loop(url: str, body: bytes, connections: int, seconds: float) -> LoadResult:
    """``connections`` clients each sending the next request when the last is answered."""
    spec = LoadSpec(
        url, body, headers=JSON_HEADERS, connections=connections, duration_s=seconds, warmup_s=0.3
    )
    return run_load(spec)
