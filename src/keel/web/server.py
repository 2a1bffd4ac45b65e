"""keel's HTTP server: listen, route each request, drop readiness first on SIGTERM, drain, exit.

keel answers HTTP itself (``http_connection``) rather than through a general
ASGI server: for a small model that server's per-request machinery cost as much
as keel's own work (docs/benchmarks.md). Inference requests go straight to the
``InferenceFront``; every other route is the Starlette app, called through a
one-request ASGI bridge. The order of a stop is the one Kubernetes needs:
readiness false at the signal, no new connections, every request already read
answered (up to ``server.grace_period_s``), then the lifespan drains the
batchers and flushes the prediction log.
"""

from __future__ import annotations

import asyncio
import email.utils
import heapq
import logging
import os
import resource
import signal
import socket
import sys
import time
import typing
import urllib.parse
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import orjson
import uvloop

from keel import log_output, tracing
from keel.errors import Overloaded
from keel.registry import Registry
from keel.serving.arrivals import Arrivals
from keel.serving.calls import VERSION_HEADER, Reply
from keel.serving.model_manager import ModelManager
from keel.serving.protocols.paths import match
from keel.settings import Settings
from keel.web import access_log
from keel.web.addresses import BACKLOG, address_unavailable, check_grpc_port
from keel.web.app import create_app
from keel.web.asgi_exchange import answer_with_app
from keel.web.grpc_edge import GrpcEdge
from keel.web.http_connection import (
    BadHttp,
    Exchange,
    HttpConnection,
    bad_http_answer,
)
from keel.web.http_errors import error_reply
from keel.web.inference_front import BodySource, InferenceFront
from keel.web.peers import Peers
from keel.web.run_dir import STATE_PATH
from keel.web.shared_listener import SharedListener
from keel.web.worker_figures import FIGURES, own_figures

log = logging.getLogger("keel.web")
_VERSION_HEADER = VERSION_HEADER.encode()

# Open files kept back from client connections when the cap is derived from the open-file
# limit: model files, the registry, the prediction log, the alias watcher, the loop's own.
_RESERVED_FILES = 128
# Paths a connection over the cap is still answered on: probes and the admin API must
# work when the server is full, that being when they are needed.
_PROBE_PREFIXES = ("/v2/health/", "/v2/repository/", "/metrics")
# Idle connections closed at once when the cap is reached, so the scan runs once per batch.
_EVICT_AT_ONCE = 32
# What a connection past the probe headroom gets before it is closed, unread.
_FULL = (
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n"
    b"retry-after: 1\r\nconnection: close\r\ncontent-length: 51\r\n\r\n"
    b'{"error":"too many open connections; retry later"}\n'
)


class HttpServer:
    """Serves ``front`` on the configured address until a stop signal.

    A worker of several (``keel serve --workers``) is given the supervisor's
    listening sockets (``listeners``) instead of binding them, answers its own figures
    on its private socket too, and stops when its supervisor is gone.
    """

    def __init__(
        self,
        front: InferenceFront,
        settings: Settings,
        listeners: list[socket.socket] | None = None,
        supervisor_pid: int | None = None,
    ) -> None:
        self.front = front
        self.settings = settings
        self.listeners = listeners
        self.supervisor_pid = supervisor_pid
        # The count the manager's batchers read, so they run at once when no request is due.
        self.arrivals = front.state.manager.arrivals or Arrivals()
        self.connections: set[HttpConnection] = set()
        self._limits = settings.server
        # Decided when the server listens (it may raise the open-file limit first).
        self.max_connections = settings.server.max_connections
        self._address: tuple[str, int] | None = None
        self._date = b""
        self._ticker: asyncio.TimerHandle | None = None
        self._grpc_edge: GrpcEdge | None = None

    async def answer(self, exchange: Exchange, connection: HttpConnection) -> Reply:
        """Route one request: inference to the front, refusals here, the rest to Starlette."""
        refusal = exchange.refusal
        if isinstance(refusal, BadHttp):
            return bad_http_answer(refusal)
        if connection.private and exchange.path == STATE_PATH:
            peers = self.front.state.peers
            assert peers is not None
            asked = urllib.parse.parse_qs(exchange.query.decode("latin-1")).get("parts")
            parts = asked[0].split(",") if asked else FIGURES
            unknown = sorted(set(parts) - set(FIGURES))
            if unknown:
                error = {"error": f"no such figures: {', '.join(unknown)} (there are {FIGURES})"}
                return Reply(400, orjson.dumps(error))
            return Reply(200, orjson.dumps(own_figures(self.front.state, peers, parts)))
        if connection.restricted:
            # One answer, then its room goes back to the pool.
            exchange.keep_alive = False
            if not exchange.path.startswith(_PROBE_PREFIXES):
                return error_reply(self._too_many())
        route = match(exchange.path)
        if route is not None:
            # A refused body goes through the front too, so the refusal counts for its version.
            body: bytes | BodySource = exchange.body if refusal is None else _raiser(refusal)
            reply = await self.front.answer(
                route, exchange.method, exchange.headers, body, exchange.began_at
            )
            if reply is None:  # never: only a body still to be read finds its client gone
                raise RuntimeError("the inference front found no client for a body in hand")
            return reply
        if refusal is not None:
            return error_reply(refusal)
        return await answer_with_app(self.front.app, exchange, connection, self._address)

    async def run(self) -> None:
        """Start the app's lifespan, listen, and serve until SIGTERM or SIGINT; then drain."""
        loop = asyncio.get_running_loop()
        stop = self._stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                log.warning("second %s: stopping without waiting", signal.Signals(signum).name)
                for connection in list(self.connections):
                    connection.abort()
                return
            log.info("%s: readiness is false; draining", signal.Signals(signum).name)
            self._begin_stop()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        server_settings = self.settings.server
        self.max_connections = connection_cap(
            server_settings.max_connections, server_settings.probe_connections
        )
        async with self.front.lifespan():
            private = await self._listen_privately()
            self._tick()
            await self._until_worth_accepting(stop)
            if server_settings.grpc_port and self.listeners is None:
                # Before either listens, and why it cannot: grpcio says only that it failed.
                check_grpc_port(server_settings.host, server_settings.grpc_port)
            listener = await self._listen(server_settings.host, server_settings.port)
            sockname = listener.sockets[0].getsockname()
            self._address = (str(sockname[0]), int(sockname[1]))
            log.info(
                "keel listening on http://%s:%d (at most %d connections, %d more for probes)",
                *self._address,
                self.max_connections,
                server_settings.probe_connections,
            )
            grpc_edge = self._grpc_edge = GrpcEdge(self.front.state)
            try:
                if server_settings.grpc_port:
                    await grpc_edge.start(
                        server_settings.host,
                        server_settings.grpc_port,
                        shared_port=self.listeners is not None,
                    )
                    log.info(
                        "keel listening for gRPC on %s:%d",
                        server_settings.host,
                        server_settings.grpc_port,
                    )
                await stop.wait()
            finally:
                listener.close()
                await asyncio.gather(
                    grpc_edge.stop(server_settings.grace_period_s),
                    self._drain(server_settings.grace_period_s),
                )
                if private is not None:
                    private.close()
                if self._ticker is not None:
                    self._ticker.cancel()

    async def _until_worth_accepting(self, stop: asyncio.Event) -> None:
        """A worker started again while others serve takes connections once it is ready.

        Connections wait in the shared queue for the workers that can answer them rather
        than for this one's models to load. When no other worker is ready (they all
        restart at once), it accepts at once, as at start: the probes must be answered.
        """
        state = self.front.state
        peers = state.peers
        if peers is None or not peers.started():
            return
        while not (state.ready or stop.is_set() or not peers.others_ready()):
            await asyncio.sleep(0.05)

    def _begin_stop(self) -> None:
        """Readiness false, at once and for every worker's probe, then the drain."""
        state = self.front.state
        state.shutting_down = True
        if state.peers is not None:
            state.peers.mark_ready(False)
        if self._grpc_edge is not None:
            self._grpc_edge.stopping()
        self._stop.set()

    async def _listen(self, host: str, port: int) -> asyncio.Server | SharedListener:
        """The listening socket; an address keel cannot take is the user's to fix, said so."""
        loop = asyncio.get_running_loop()
        if self.listeners is not None:
            return SharedListener(loop, self.listeners, self._connection)
        try:
            return await loop.create_server(
                self._connection, host=host, port=port, reuse_address=True, backlog=BACKLOG
            )
        except OSError as exc:
            raise address_unavailable(host, port, exc) from None

    async def _listen_privately(self) -> asyncio.Server | None:
        """A worker's private socket: its own warm-up, and its figures for the other workers."""
        peers = self.front.state.peers
        if peers is None:
            return None

        def private_connection() -> asyncio.Protocol:
            connection = self._new_connection()
            connection.private = True
            return connection

        return await asyncio.get_running_loop().create_unix_server(
            private_connection, peers.socket_path
        )

    def _connection(self) -> asyncio.Protocol:
        open_now = len(self.connections)
        if open_now >= self.max_connections:
            self._evict_idle()
            open_now = len(self.connections)
        if open_now >= self.max_connections + self.settings.server.probe_connections:
            return _Refused()
        connection = self._new_connection()
        connection.restricted = open_now >= self.max_connections
        return connection

    def _new_connection(self) -> HttpConnection:
        answerer = self._answer_and_log if self.settings.log.access else self.answer
        return HttpConnection(
            answerer, self._limits, self.connections, self._date_header, self.arrivals
        )

    async def _answer_and_log(self, exchange: Exchange, connection: HttpConnection) -> Reply:
        """``answer``, and its access-log line (``log.access``); a worker's private calls
        to another are not the server's requests and have none."""
        started = time.perf_counter()
        reply = await self.answer(exchange, connection)
        if not connection.private:
            headers = exchange.headers
            route = match(exchange.path)
            access_log.request_line(
                protocol="HTTP",
                method=exchange.method,
                path=exchange.path,
                status=reply.status,
                size=len(reply.body),
                seconds=time.perf_counter() - started,
                model=None if route is None else route[1],
                version=access_log.header(reply.headers, _VERSION_HEADER),
                request_id=access_log.header(headers, b"x-request-id"),
                # The trace it is in: the one a traced answer names, else the caller's.
                trace_id=access_log.trace_id_of(
                    access_log.header(reply.headers, b"traceresponse")
                    or access_log.header(headers, b"traceparent")
                ),
            )
        return reply

    def _evict_idle(self) -> None:
        """At the cap, close the connections idle longest between requests.

        As nginx reuses idle keep-alive connections when it runs out: a client holding
        connections it does not use must not keep out one that has a request to send.
        Those part way through a request are not idle; the header and body time limits
        bound them instead.
        """
        now = time.monotonic()
        idle = [c for c in self.connections if c.evictable(now)]
        # Enough to bring the count under the cap, and a batch more for those to come.
        count = len(self.connections) - self.max_connections + _EVICT_AT_ONCE
        evicted = heapq.nsmallest(count, idle, key=lambda c: c.last_active)
        for connection in evicted:
            connection.close_idle()

    def _too_many(self) -> Overloaded:
        return Overloaded(
            f"too many open connections (server.max_connections is {self.max_connections}); "
            "this connection is answered only on the probes and the admin API: retry later"
        )

    async def _drain(self, grace_s: float) -> None:
        """Let every open connection answer what it has read, then close; cut off after grace_s."""
        for connection in list(self.connections):
            connection.shutdown()
        deadline = asyncio.get_running_loop().time() + grace_s
        while self.connections and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.05)
        if self.connections:
            log.warning(
                "%d connections still busy after %.1f s; closing them",
                len(self.connections),
                grace_s,
            )
            for connection in list(self.connections):
                connection.abort()

    def _date_header(self) -> bytes:
        return self._date

    def _tick(self) -> None:
        """Once a second: the Date header, and silent connections closed."""
        # RFC 9110 wants a Date on every answer; formatting one costs more than the
        # rest of an answer's headers. A timer per connection, re-armed per request,
        # cost more than this sweep.
        self._date = b"date: " + email.utils.formatdate(usegmt=True).encode() + b"\r\n"
        orphaned = self.supervisor_pid is not None and os.getppid() != self.supervisor_pid
        if orphaned and not self._stop.is_set():
            # The supervisor died without stopping its workers (SIGKILL, OOM): nobody would
            # restart or stop this one, so it drains and leaves as on SIGTERM.
            log.warning("the supervisor (pid %d) is gone; draining", self.supervisor_pid)
            self._begin_stop()
        now = time.monotonic()
        for connection in list(self.connections):
            connection.sweep(now)
        self._ticker = asyncio.get_running_loop().call_later(1.0, self._tick)


class _Refused(asyncio.Protocol):
    """A connection past every cap: told so and closed, without a byte read."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        typing.cast(asyncio.Transport, transport).write(_FULL)
        transport.close()


def connection_cap(configured: int, probes: int) -> int:
    """The connections served in full: ``configured``, or derived from the open-file limit.

    The soft limit is raised to the hard one first, as Go's runtime does for every
    server: the soft default (often 1024) is a relic of select(), which keel never uses.
    Past the limit accept() fails with EMFILE and every other file the server opens
    (a model, the registry, the log) fails with it, so the cap stays well below.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
            soft = hard
        except (ValueError, OSError) as exc:
            log.warning("could not raise the open-file limit from %d to %d: %s", soft, hard, exc)
    if soft == resource.RLIM_INFINITY:
        soft = 1 << 20
    derived = max(16, soft - _RESERVED_FILES - probes)
    if configured == 0:
        return derived
    if configured > derived:
        log.warning(
            "server.max_connections is %d but the open-file limit (%d) leaves room for %d",
            configured,
            soft,
            derived,
        )
    return configured


def _raiser(error: Exception) -> BodySource:
    async def refuse(headers: Mapping[str, str]) -> bytes:
        raise error

    return refuse


def serve(
    refs: Sequence[str],
    settings: Settings,
    registry: Registry,
    *,
    listeners: list[socket.socket] | None = None,
    peers: Peers | None = None,
    supervisor_pid: int | None = None,
) -> None:
    """Serve ``refs`` until a stop signal; blocks.

    Alone, on the configured address; as one worker of several (``web/worker.py``),
    on the supervisor's ``listeners``, with ``peers`` for the others.
    """
    if peers is None:
        log_output.configure(settings.log)
    else:
        log_output.configure(settings.log, f"worker {peers.index}", worker=peers.index)
    # Checked again in each process (the CLI checked it first): a worker starts from the
    # supervisor's environment, which nothing has changed since.
    trace_settings = tracing.settings_from()
    if trace_settings is not None:
        tracing.start(trace_settings, worker=None if peers is None else peers.index)
    sys.setswitchinterval(settings.server.switch_interval_ms / 1000.0)
    # The cores this process may run on, not the machine's: taskset and cgroups
    # pinning leave fewer.
    threads = settings.server.inference_threads or len(os.sched_getaffinity(0)) or 1
    # Loads and verifies versions; each version runs its model on threads of its own.
    executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="keel-load")
    manager = ModelManager(registry, settings, executor, Arrivals())
    front = create_app(manager, settings, refs, peers)
    try:
        uvloop.run(HttpServer(front, settings, listeners, supervisor_pid).run())
    finally:
        executor.shutdown(wait=False, cancel_futures=True)
        # The spans of the last requests, sent before the process ends.
        tracing.stop()
