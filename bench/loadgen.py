"""An HTTP/1.1 load generator fast enough not to be the bottleneck on one core.

Raw keep-alive connections on uvloop, one asyncio Protocol each; the request
bytes are encoded once and written as they are; a response is parsed only as
far as its status line and Content-Length. Two ways to drive a server:

* closed loop: N connections, each sends its next request when the previous
  answer arrives. Saturation throughput with many connections, the latency of
  a lone request with one.
* open loop: requests are due at a fixed rate, whatever the server does, and
  go out on whichever pooled connection is free. Latency is measured from the
  time a request was *due*, so a server that falls behind shows it in the
  percentiles instead of slowing the generator down (no coordinated omission).

Every run is bounded by a duration and a request count and stops by itself.

    python bench/loadgen.py http://127.0.0.1:8080/v1/models/m/predict \\
        --body-file body.json -H 'Content-Type: application/json' \\
        --connections 64 --duration 10 --warmup 2
    python bench/loadgen.py URL --body-file body.json --rate 3000 --connections 64
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gc
import json
import math
import socket
import sys
import time
import typing
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from urllib.parse import urlsplit

import uvloop

# After the measured window, answers still outstanding get this long to arrive.
DRAIN_S = 5.0
# The open-loop scheduler sleeps on the loop's timer only when the next request is
# due further off than this; closer than that it polls, because libuv's timers
# round to the millisecond and the lag would be charged to the server.
_SPIN_BELOW_S = 0.002


@dataclass(frozen=True)
class LoadSpec:
    """What to send, where, and how hard."""

    url: str
    body: bytes = b""
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()
    connections: int = 1
    duration_s: float = 5.0
    warmup_s: float = 1.0
    rate: float | None = None
    """Requests per second for an open loop; None for a closed loop."""
    max_requests: int = 10_000_000
    connect_timeout_s: float = 5.0
    keep_samples: bool = False
    """Return every measured latency too, so runs can be pooled before taking percentiles."""
    slot_s: float = 0.0
    """Open loop: when set, time is cut into slots of this many seconds, dealt in turn to
    ``slot_count`` runs, and this run sends only the requests due in slot ``slot``."""
    slot_count: int = 1
    slot: int = 0
    slot_guard_s: float = 0.0
    """No request is due in the last ``slot_guard_s`` of a slot: what the requests of one
    server's slot leave running ends before the next server's slot begins."""


@dataclass
class LoadResult:
    """What one run measured, latencies in microseconds."""

    mode: str
    connections: int
    rate: float | None
    requests: int
    duration_s: float
    throughput: float
    status: dict[str, int]
    errors: int
    unanswered: int
    latency_us: dict[str, float]
    send_lag_us: dict[str, float] = field(default_factory=dict)
    """Open loop only: how late requests left the generator after they were due."""
    generator_cpu: float = 0.0
    """CPU seconds the generator used per second of the window: near 1.0 it was the limit."""
    samples_s: list[float] = field(default_factory=list, repr=False)
    """Every measured latency in seconds, when the spec asked to keep them (else empty)."""


def encode_request(spec: LoadSpec) -> tuple[str, int, bytes]:
    """Host, port and the request's bytes, encoded once for the whole run."""
    parts = urlsplit(spec.url)
    if parts.scheme != "http" or parts.hostname is None:
        raise ValueError(f"only http://host:port/path URLs are supported, got {spec.url!r}")
    port = parts.port or 80
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    lines = [f"{spec.method} {target} HTTP/1.1", f"Host: {parts.hostname}:{port}"]
    lines += [f"{name}: {value}" for name, value in spec.headers]
    if spec.body or spec.method in ("POST", "PUT", "PATCH"):
        lines.append(f"Content-Length: {len(spec.body)}")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return parts.hostname, port, head + spec.body


class _Run:
    """Shared state of one run: the clock, the window, the answers counted so far."""

    def __init__(self, spec: LoadSpec, request: bytes, loop: asyncio.AbstractEventLoop) -> None:
        self.request = request
        self.loop = loop
        self.max_requests = spec.max_requests
        self.sent = 0
        self.outstanding = 0
        self.sending = True
        self.window_start = 0.0
        self.window_end = math.inf
        self.latencies: list[float] = []
        self.lags: list[float] = []
        self.status: collections.Counter[int] = collections.Counter()
        self.errors = 0
        self.backlog: collections.deque[float] = collections.deque()
        self.idle: list[_Connection] = []
        self.closed_loop = spec.rate is None
        self.drained: asyncio.Future[None] = loop.create_future()

    def answered(self, connection: _Connection, status: int, intended: float) -> None:
        self.outstanding -= 1
        # A request counts when it was due inside the window, however late its answer:
        # dropping late answers would hide exactly the queueing an open loop is for.
        if self.window_start <= intended < self.window_end:
            self.latencies.append(time.perf_counter() - intended)
            self.status[status] += 1
        self.next_for(connection)

    def failed(self, connection: _Connection) -> None:
        """A connection died (the server closed it or reset it); it is not used again."""
        self.errors += 1
        if connection.busy:
            self.outstanding -= 1
        if connection in self.idle:
            self.idle.remove(connection)
        self._check_drained()

    def next_for(self, connection: _Connection) -> None:
        """Give a connection that just became free its next request, or park it."""
        if self.backlog:
            # Open loop: requests already due go out even after the schedule ended.
            self.send(connection, self.backlog.popleft())
        elif self.closed_loop and self.sending and self.sent < self.max_requests:
            self.send(connection, time.perf_counter())
        else:
            connection.busy = False
            self.idle.append(connection)
            self._check_drained()

    def due(self, intended: float) -> None:
        """Open loop: a request is due now; send it on a free connection or queue it."""
        if self.idle:
            self.send(self.idle.pop(), intended)
        else:
            self.backlog.append(intended)

    def send(self, connection: _Connection, intended: float) -> None:
        self.sent += 1
        self.outstanding += 1
        if not self.closed_loop and intended >= self.window_start:
            self.lags.append(time.perf_counter() - intended)
        connection.send(self.request, intended)

    def stop(self) -> None:
        self.sending = False
        self.window_end = min(self.window_end, time.perf_counter())
        self._check_drained()

    def _check_drained(self) -> None:
        if (
            (not self.sending or self.sent >= self.max_requests)
            and self.outstanding <= 0
            and not self.backlog
            and not self.drained.done()
        ):
            self.drained.set_result(None)


class _Connection(asyncio.Protocol):
    """One keep-alive connection with at most one request in flight."""

    def __init__(self, run: _Run) -> None:
        self.run = run
        self.transport: asyncio.Transport | None = None
        self.buffer = b""
        self.expected = -1
        self.status = 0
        self.intended = 0.0
        self.busy = False
        self.lost: asyncio.Future[None] = run.loop.create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = typing.cast(asyncio.Transport, transport)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def send(self, request: bytes, intended: float) -> None:
        assert self.transport is not None
        self.busy = True
        self.intended = intended
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data if self.buffer else data
        while True:
            if self.expected < 0:
                end = buffer.find(b"\r\n\r\n")
                if end < 0:
                    break
                head = buffer[:end]
                self.status = int(head[9:12])
                self.expected = end + 4 + content_length(head)
            if len(buffer) < self.expected:
                break
            buffer = buffer[self.expected :]
            self.expected = -1
            self.run.answered(self, self.status, self.intended)
            if not buffer:
                break
        self.buffer = buffer

    def connection_lost(self, exc: Exception | None) -> None:
        if self.busy or self.run.sending:
            self.run.failed(self)
        self.busy = False
        if not self.lost.done():
            self.lost.set_result(None)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def content_length(head: bytes) -> int:
    """The Content-Length of a response head (0 when it has none)."""
    # Anchored at a line start: Inference-Header-Content-Length must not match.
    at = head.find(b"\r\ncontent-length:")
    if at < 0:
        at = head.lower().find(b"\r\ncontent-length:")
        if at < 0:
            return 0
    stop = head.find(b"\r\n", at + 2)
    return int(head[at + 17 : stop if stop >= 0 else len(head)])


async def load(spec: LoadSpec, start_at: float | None = None) -> LoadResult:
    """Run the load ``spec`` describes against a server; returns when the run is over.

    ``start_at`` (a ``time.perf_counter`` time) fixes when the run's clock starts,
    once its connections are open, so that runs on one loop keep a set phase apart.
    """
    if spec.connections < 1 or spec.duration_s <= 0 or spec.warmup_s < 0:
        raise ValueError("connections >= 1, duration > 0 and warmup >= 0 are required")
    if spec.rate is not None and spec.rate <= 0:
        raise ValueError("an open-loop rate must be positive")
    host, port, request = encode_request(spec)
    loop = asyncio.get_running_loop()
    run = _Run(spec, request, loop)
    connections = await _connect(loop, run, host, port, spec)
    cpu_marks: list[float] = []
    try:
        if start_at is not None:
            early = start_at - time.perf_counter()
            if early < 0:
                raise RuntimeError(f"connecting took {-early:.3f} s past the run's agreed start")
            await asyncio.sleep(early)
        started = time.perf_counter() if start_at is None else start_at
        run.window_start = started + spec.warmup_s
        loop.call_at(loop.time() + spec.warmup_s, lambda: cpu_marks.append(time.process_time()))
        window_end = run.window_end = run.window_start + spec.duration_s
        if run.closed_loop:
            for connection in connections:
                run.send(connection, time.perf_counter())
            # Over at the window's end, or once max_requests are sent and answered.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    asyncio.shield(run.drained), max(0.0, window_end - time.perf_counter())
                )
        else:
            run.idle = list(connections)
            assert spec.rate is not None
            await _schedule(run, started, window_end, spec)
        run.stop()
        cpu_marks.append(time.process_time())
        # Answers that never come within the drain are reported as unanswered.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(run.drained), DRAIN_S)
        unanswered = max(0, run.outstanding) + len(run.backlog)
    finally:
        for connection in connections:
            connection.close()
        await asyncio.wait([c.lost for c in connections], timeout=1.0)
    result = _result(spec, run, unanswered)
    if len(cpu_marks) == 2:
        result.generator_cpu = round((cpu_marks[1] - cpu_marks[0]) / result.duration_s, 3)
    return result


async def _connect(
    loop: asyncio.AbstractEventLoop, run: _Run, host: str, port: int, spec: LoadSpec
) -> list[_Connection]:
    async def one() -> _Connection:
        _, protocol = await loop.create_connection(lambda: _Connection(run), host, port)
        return protocol

    async with asyncio.timeout(spec.connect_timeout_s):
        return list(await asyncio.gather(*(one() for _ in range(spec.connections))))


async def _schedule(run: _Run, started: float, end: float, spec: LoadSpec) -> None:
    """Make request ``i`` due at ``started + i / rate`` until ``end`` (or ``max_requests``).

    With slots, only the requests due in this run's own slots are sent.
    """
    assert spec.rate is not None
    interval = 1.0 / spec.rate
    index = 0
    total = min(spec.max_requests, int((end - started) * spec.rate))

    def mine(i: int) -> bool:
        if not spec.slot_s:
            return True
        slot, into = divmod(i * interval, spec.slot_s)
        return int(slot) % spec.slot_count == spec.slot and into < spec.slot_s - spec.slot_guard_s

    while index < total:
        now = time.perf_counter()
        while index < total and started + index * interval <= now:
            if mine(index):
                run.due(started + index * interval)
            index += 1
        while index < total and not mine(index):
            index += 1
        if index >= total:
            break
        wait = started + index * interval - time.perf_counter()
        # Sleep on the timer when the next request is far off; otherwise yield to I/O only.
        await asyncio.sleep(wait - 0.001 if wait > _SPIN_BELOW_S else 0)
    remaining = end - time.perf_counter()
    if remaining > 0:
        await asyncio.sleep(remaining)


def _result(spec: LoadSpec, run: _Run, unanswered: int) -> LoadResult:
    window = max(1e-9, run.window_end - run.window_start)
    count = len(run.latencies)
    return LoadResult(
        mode="closed" if run.closed_loop else "open",
        connections=spec.connections,
        rate=spec.rate,
        requests=count,
        duration_s=round(window, 3),
        throughput=round(count / window, 1),
        status={str(code): n for code, n in sorted(run.status.items())},
        errors=run.errors,
        unanswered=unanswered,
        latency_us=percentiles(run.latencies),
        send_lag_us=percentiles(run.lags) if not run.closed_loop else {},
        samples_s=run.latencies if spec.keep_samples else [],
    )


def percentiles(samples: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/max/mean in microseconds of samples in seconds (nearest rank)."""
    if not samples:
        return {}
    ordered = sorted(samples)
    last = len(ordered) - 1

    def rank(q: float) -> float:
        return round(ordered[min(last, math.ceil(q * len(ordered)) - 1)] * 1e6, 1)

    return {
        "p50": rank(0.50),
        "p90": rank(0.90),
        "p99": rank(0.99),
        "max": round(ordered[last] * 1e6, 1),
        "mean": round(sum(ordered) / len(ordered) * 1e6, 1),
    }


@contextlib.contextmanager
def collection_paused() -> Iterator[None]:
    """The garbage collector off for the block, after a full collection before it.

    Latency counts from when a request was due, so a pause of the generator's own counts
    against the server. In a process with a large heap the pauses are long: in pytest,
    after a thousand tests, generation-2 collections took up to 0.5 s, and one landing in
    an overload run made its p99 fail. What a run allocates is freed by reference counts.
    """
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def run_load(spec: LoadSpec) -> LoadResult:
    """Run ``load(spec)`` on a fresh uvloop event loop; blocks until the run is over."""
    with collection_paused():
        return uvloop.run(load(spec))


# Time the runs of ``run_loads_together`` get to open their connections before they start.
TOGETHER_LEAD_S = 0.5


def run_loads_together(specs: Sequence[LoadSpec]) -> list[LoadResult]:
    """Run several loads on one fresh event loop, their clocks started at the same moment.

    Open loops at one rate with slots (``slot_s``, ``slot_count`` the number of runs,
    ``slot`` each its own) take turns: each server is driven for a slot, then left
    idle while the others are, and all meet the same seconds of the machine's noise.
    """

    async def together() -> list[LoadResult]:
        start = time.perf_counter() + TOGETHER_LEAD_S
        return list(await asyncio.gather(*(load(spec, start) for spec in specs)))

    with collection_paused():
        return uvloop.run(together())


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("url")
    parser.add_argument("--method", default=None, help="default POST with a body, GET without")
    parser.add_argument("--body-file", help="file whose bytes are the request body")
    parser.add_argument("-H", "--header", action="append", default=[], help="'Name: value'")
    parser.add_argument("-c", "--connections", type=int, default=1)
    parser.add_argument("-d", "--duration", type=float, default=5.0, help="measured seconds")
    parser.add_argument("-w", "--warmup", type=float, default=1.0, help="unmeasured seconds first")
    parser.add_argument("-r", "--rate", type=float, help="open loop at this many requests/s")
    parser.add_argument("-n", "--max-requests", type=int, default=10_000_000)
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    return parser.parse_args(argv)


def _header(text: str) -> tuple[str, str]:
    name, sep, value = text.partition(":")
    if not sep:
        raise SystemExit(f"a header is 'Name: value', got {text!r}")
    return name.strip(), value.strip()


def main(argv: Sequence[str] | None = None) -> None:
    args = _parse_args(argv)
    body = b""
    if args.body_file:
        with open(args.body_file, "rb") as handle:
            body = handle.read()
    headers = tuple(_header(h) for h in args.header)
    spec = LoadSpec(
        url=args.url,
        body=body,
        method=args.method or ("POST" if body else "GET"),
        headers=headers,
        connections=args.connections,
        duration_s=args.duration,
        warmup_s=args.warmup,
        rate=args.rate,
        max_requests=args.max_requests,
    )
    result = run_load(spec)
    if args.json:
        print(json.dumps(asdict(result)))
        return
    lat = result.latency_us
    print(
        f"{result.mode} loop, {result.connections} connections"
        + (f", {result.rate:g} req/s offered" if result.rate else "")
        + f": {result.requests} requests in {result.duration_s} s = {result.throughput} req/s\n"
        f"status {result.status}, errors {result.errors}, unanswered {result.unanswered}\n"
        + f"generator CPU {result.generator_cpu:.0%}\n"
        + "latency µs: "
        + " ".join(f"{k} {v:g}" for k, v in lat.items())
        + (
            "\nsend lag µs: " + " ".join(f"{k} {v:g}" for k, v in result.send_lag_us.items())
            if result.send_lag_us
            else ""
        ),
        file=sys.stdout,
    )


if __name__ == "__main__":
    main()
