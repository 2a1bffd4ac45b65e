"""One HTTP/1.1 connection of keel's server: parsed by httptools, answered in order, one write each.

For a small tabular model nearly all of a request's cost is serving overhead, and
a general ASGI server spends much of it on generality keel does not need: a
scope dictionary, receive and send channels, a message per body chunk, two
writes per response. Here a request is parsed into an ``Exchange``, its body
buffered under the size limit, and handed whole to the server's ``Answerer``;
the reply goes out as one write. The rules of HTTP/1.1 that matter to a client
are kept: keep-alive and ``Connection: close``, pipelined requests answered in
the order they came, ``Expect: 100-continue``, chunked request bodies, 413 for a
body over the limit before any of it is kept, 400 and a closed connection for
bytes that are not HTTP, no body in an answer to HEAD, an ``Upgrade`` (``h2c``)
ignored as RFC 9110 allows, an idle connection closed after ``keep_alive_s`` and
one silent part way through a request after ``read_timeout_s``.

Every resource a client controls is bounded (docs/reliability.md): the bytes the
parser holds before it makes progress (an endless header line, chunk-size line or
trailer is refused at ``max_header_bytes``, not buffered), a body's memory (one
growing buffer, never an object per chunk), the time to send the header block
(``header_timeout_s``) and the body (``body_timeout_s`` plus its size at
``body_min_bytes_per_s``), and, in the server, the number of open connections.
"""

from __future__ import annotations

import asyncio
import logging
import time
import typing
from collections import deque
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import unquote

import httptools
import orjson

from keel.errors import KeelError, ProtocolError
from keel.serving.arrivals import Arrivals
from keel.serving.calls import Reply
from keel.settings import ServerSettings
from keel.web.http_errors import INTERNAL_ERROR
from keel.web.request_body import body_too_large

log = logging.getLogger("keel.web")

# More requests than this parsed ahead of their answers, and reading pauses.
_PIPELINE_DEPTH = 16
# After refusing bytes that are not an acceptable request, what is still coming is read
# and dropped for this long (and this many bytes) before closing, as nginx's lingering
# close does: closing a socket with unread input resets it, and the client would lose
# the answer that says why.
_LINGER_S = 2.0
_LINGER_BYTES = 1 << 20
# A read this large is a client sending in bulk: the connection then skips a turn of the
# loop before reading more. libuv reads a readable socket up to 32 times a turn, and
# 8 MiB of one-byte chunks held the loop (and every probe) for a second.
_BULK_READ = 64 * 1024
# How long a new connection may stay silent before the server, at its connection cap,
# may close it to make room.
_FRESH_GRACE_S = 1.0

STATUS_LINES: dict[int, bytes] = {
    int(status): f"HTTP/1.1 {int(status)} {status.phrase}\r\n".encode("latin-1")
    for status in HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Exchange:
    """One request on its way through a connection: what was parsed, and the body so far."""

    __slots__ = (
        "began_at",
        "body",
        "buffer",
        "complete",
        "continued",
        "expects_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "path",
        "query",
        "raw_path",
        "refusal",
        "size",
        "upgrade_body",
        "url",
    )

    def __init__(self) -> None:
        # When its first bytes came: time.monotonic(), which is perf_counter's clock on Linux.
        self.began_at = 0.0
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = ""
        self.http_version = "1.1"
        self.path = ""
        self.raw_path = b""
        self.query = b""
        # The body so far: the first piece as it came, then one buffer that grows. A list
        # of pieces cost 90 bytes of memory per body byte when the client sent one-byte chunks.
        self.buffer: bytes | bytearray = b""
        self.size = 0
        self.body = b""
        self.keep_alive = True
        self.expects_continue = False
        self.continued = False
        self.complete = False
        # Set when the request is answered without being run: its body is not kept.
        self.refusal: KeelError | None = None
        # The framing headers of a body that follows an ignored Upgrade (see data_received).
        self.upgrade_body: bytes = b""

    @property
    def ready(self) -> bool:
        """Whether it can be answered now: all of its body is here, or it is refused anyway."""
        return self.complete or self.refusal is not None


Answerer = Callable[[Exchange, "HttpConnection"], Awaitable[Reply]]
"""Turns a complete (or refused) exchange into its answer; the server's routing."""


class HttpConnection(asyncio.Protocol):
    """An asyncio protocol for one client connection; ``connections`` holds the open ones."""

    def __init__(
        self,
        answerer: Answerer,
        limits: ServerSettings,
        connections: set[HttpConnection],
        date_header: Callable[[], bytes],
        arrivals: Arrivals | None = None,
    ) -> None:
        self._answerer = answerer
        # A connection served alone (tests, benchmarks) counts into a count of its own.
        self._arrivals = arrivals or Arrivals()
        # Whether _answering was created but has not run yet (counted in arrivals).
        self._unstarted = False
        self._limits = limits
        # Read in every header callback: one attribute, not two.
        self._max_header_bytes = limits.max_header_bytes
        self._connections = connections
        self._date_header = date_header
        self._parser = httptools.HttpRequestParser(self)
        # Kept: asyncio.get_running_loop() makes a system call (getpid) on Python 3.11.
        self._loop = asyncio.get_running_loop()
        self._transport: asyncio.Transport | None = None
        self._parsing: Exchange | None = None
        # The header list of the exchange being parsed (see on_message_begin).
        self._headers: list[tuple[bytes, bytes]] = []
        # When the message being parsed began (0 until one has: the connection is fresh),
        # and when its body began to be owed.
        self._began_at = 0.0
        self._body_since = 0.0
        # Bytes fed to the parser since it last made progress (headers done, body bytes,
        # message done): httptools buffers an unfinished line itself, so this bounds it.
        self._unparsed = 0
        self._progressed = False
        self._pending: deque[Exchange] = deque()
        self._answering: asyncio.Task[None] | None = None
        # When the client last sent bytes or got an answer; the server's sweep closes
        # a connection that is owed nothing and has been silent past keep_alive_s.
        self._last_active = time.monotonic()
        self._header_bytes = 0
        self._paused = False
        # Cleared while the transport's write buffer is over its high-water mark: the
        # answers owed then wait for the client to read, instead of piling up here.
        self._writable = asyncio.Event()
        self._writable.set()
        self._stopping = False
        # When the connection began dropping what it reads, before it closes (_linger).
        self._lingering_since: float | None = None
        self._lingered = 0
        self.peer: tuple[str, int] | None = None
        # Set by the server for a connection over its cap: only probes are answered.
        self.restricted = False
        # Accepted on a worker's private socket (``run_dir``): its figures are served there.
        self.private = False
        # Set once the connection is lost; an answer still being computed is dropped.
        self.lost = False
        # Set once the client has gone, for an app that wants to know (ASGI http.disconnect).
        self.gone: asyncio.Event = asyncio.Event()

    # -- asyncio.Protocol ---------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = typing.cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        if isinstance(peer, tuple) and len(peer) >= 2:
            self.peer = (str(peer[0]), int(peer[1]))
        self._connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self.gone.set()
        self._writable.set()
        self._connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self._last_active = time.monotonic()
        if self._lingering_since is not None:
            self._lingered += len(data)
            if self._lingered > _LINGER_BYTES:
                self.abort()
            return
        self._progressed = False
        try:
            self._parser.feed_data(data)
        except (httptools.HttpParserUpgrade, httptools.HttpParserError) as exc:
            rest = self._parse_stopped(exc, data)
            if rest is None:
                return
            data = rest
        if len(data) >= _BULK_READ and not self._paused:
            self._stop_reading()
            self._loop.call_soon(self._resume_after_turn)
        if self._progressed:
            self._unparsed = 0
        else:
            self._bound_unparsed(len(data))

    def _parse_stopped(self, stop: Exception, data: bytes) -> bytes | None:
        """After the parser stopped: the bytes it went on to parse, or None if it is over.

        It stops at an Upgrade, which keel ignores (parsing goes on after it), and at
        bytes that are not an acceptable request, which are refused.
        """
        while True:
            if isinstance(stop, httptools.HttpParserUpgrade):
                # The parser stops where the upgraded protocol would begin.
                data = data[int(stop.args[0]) :]
                if not self._ignore_upgrade():
                    return None
                try:
                    self._parser.feed_data(data)
                except (httptools.HttpParserUpgrade, httptools.HttpParserError) as again:
                    stop = again
                    continue
                return data
            if isinstance(stop, httptools.HttpParserCallbackError):
                if isinstance(stop.__context__, _HeadersTooLarge):
                    self._refuse_headers()
                else:
                    log.error("HTTP connection failed while parsing", exc_info=stop.__context__)
                    self._refuse_connection(400, "the request could not be read")
            else:
                self._refuse_connection(400, f"malformed HTTP request: {_reason(stop)}")
            return None

    def _bound_unparsed(self, count: int) -> None:
        """Count bytes the parser holds without progress; refuse them past the header limit."""
        self._unparsed += count
        if self._unparsed > self._limits.max_header_bytes:
            if self._in_headers:
                self._refuse_headers()
            else:
                self._refuse_connection(
                    400,
                    f"chunk-size lines or trailers exceed {self._limits.max_header_bytes} bytes",
                )

    @property
    def _in_headers(self) -> bool:
        """Whether the message being parsed is still in its request line and headers."""
        exchange = self._parsing
        # on_headers_complete sets the method first.
        return exchange is not None and not exchange.method

    def eof_received(self) -> bool:
        """The client shut its side: answer what it already sent, then close."""
        if self._lingering_since is not None:
            return False
        if self._pending or self._answering is not None:
            # Half-closed, the socket can still carry the answers owed.
            self._stopping = True
            return True
        return False

    def pause_writing(self) -> None:
        # A client that does not read its answers stops being read from, so its
        # pipelined requests cannot pile answers up in memory.
        self._writable.clear()
        self._stop_reading()

    def resume_writing(self) -> None:
        self._writable.set()
        if len(self._pending) <= _PIPELINE_DEPTH // 2:
            self._resume_reading()

    # -- httptools callbacks ------------------------------------------------------

    # httptools calls on_message_begin before every other callback of a message, so
    # _parsing is an Exchange in each of them (the asserts say so to the type checker).

    def on_message_begin(self) -> None:
        exchange = self._parsing = Exchange()
        # on_header appends here: one attribute, where the exchange would take two.
        self._headers = exchange.headers
        self._began_at = exchange.began_at = self._last_active
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        exchange = self._parsing
        assert exchange is not None
        exchange.url += url
        self._header_bytes += len(url)
        if self._header_bytes > self._max_header_bytes:
            raise _HeadersTooLarge

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            assert self._parsing is not None
            self._parsing.expects_continue = True
        self._headers.append((name, value))
        self._header_bytes += len(name) + len(value)
        if self._header_bytes > self._max_header_bytes:
            raise _HeadersTooLarge

    def on_headers_complete(self) -> None:
        exchange = self._parsing
        assert exchange is not None
        self._progressed = True
        # When these bytes arrived: data_received has just read the clock.
        self._body_since = self._last_active
        exchange.method = self._parser.get_method().decode("ascii")
        exchange.http_version = self._parser.get_http_version()
        exchange.keep_alive = self._parser.should_keep_alive() and not self._stopping
        try:
            url = httptools.parse_url(exchange.url)
        except httptools.HttpParserInvalidURLError:
            exchange.refusal = ProtocolError("the request target is not a valid URL")
        else:
            exchange.raw_path = url.path
            path = url.path.decode("latin-1")
            exchange.path = unquote(path) if "%" in path else path
            exchange.query = url.query or b""
        if exchange.refusal is None:
            exchange.refusal = self._body_refusal(exchange)
        if exchange.refusal is not None:
            # The rest of the body is read and dropped, then the connection closes: a
            # client still sending would otherwise be reset before it reads the answer.
            exchange.keep_alive = False
        elif self._parser.should_upgrade():
            # httptools skips the body of a request that asks to upgrade; keep what frames
            # it, so that the body can be read after all (_ignore_upgrade).
            exchange.upgrade_body = _body_framing(exchange.headers)
        self._pending.append(exchange)
        if len(self._pending) > _PIPELINE_DEPTH:
            self._stop_reading()
        self._advance()

    def resume(self, exchange: Exchange) -> None:
        """The made-up head that frames a body after an ignored Upgrade begins (_UpgradedBody)."""
        self._parsing = exchange

    def resume_body(self) -> None:
        """The head that frames a body after an ignored Upgrade is read (_UpgradedBody)."""
        self._progressed = True
        self._body_since = self._last_active

    def on_body(self, body: bytes) -> None:
        self._progressed = True
        exchange = self._parsing
        if exchange is None or exchange.refusal is not None:
            return
        exchange.size += len(body)
        if exchange.size > self._limits.max_body_bytes:
            exchange.refusal = body_too_large(self._limits.max_body_bytes)
            exchange.buffer = b""
            exchange.keep_alive = False
            self._advance()
            return
        buffer = exchange.buffer
        if not buffer:
            exchange.buffer = body
        elif isinstance(buffer, bytearray):
            buffer += body
        else:
            exchange.buffer = bytearray(buffer) + body

    def on_message_complete(self) -> None:
        exchange = self._parsing
        assert exchange is not None
        self._progressed = True
        if exchange.upgrade_body:
            # The body comes after the Upgrade that data_received is about to ignore.
            return
        self._parsing = None
        exchange.complete = True
        if self._stopping:
            self._stop_reading()
        if exchange.refusal is None:
            buffer = exchange.buffer
            exchange.body = buffer if isinstance(buffer, bytes) else bytes(buffer)
            exchange.buffer = b""
        elif exchange not in self._pending and self._transport is not None:
            # Its answer is out already; its body has now been read to the end.
            self._transport.close()
        self._advance()

    # -- answering ----------------------------------------------------------------

    def _advance(self) -> None:
        """Start answering the oldest request if it can be; answers go out in order."""
        if self._answering is not None or not self._pending:
            return
        if self._transport is None or self._transport.is_closing():
            return
        head = self._pending[0]
        if head.ready:
            self._answering = self._loop.create_task(self._answer_ready())
            self._arrivals.unstarted += 1
            self._unstarted = True
        elif head.expects_continue and not head.continued and self._transport is not None:
            head.continued = True
            # The client waited for this before sending: its body's time starts now.
            self._body_since = time.monotonic()
            self._transport.write(_CONTINUE)

    async def _answer_ready(self) -> None:
        self._started()
        try:
            while self._pending and self._pending[0].ready and not self.lost:
                if not self._writable.is_set():
                    await self._writable.wait()
                    continue
                exchange = self._pending[0]
                try:
                    answer = await self._answerer(exchange, self)
                except asyncio.CancelledError:
                    raise
                except Exception:
                    log.exception("unexpected error while answering a request")
                    answer = INTERNAL_ERROR
                self._pending.popleft()
                if not self._send(exchange, answer):
                    break
        finally:
            self._answering = None
        if self.lost:
            return
        if len(self._pending) <= _PIPELINE_DEPTH // 2:
            self._resume_reading()
        self._advance()
        self._last_active = time.monotonic()
        if not self._pending and self._stopping and self._parsing is None:
            self._close()

    def _send(self, exchange: Exchange, answer: Reply) -> bool:
        """Write the answer; whether the connection stays open for the next one."""
        transport = self._transport
        if transport is None or self.lost:
            return False
        status, body, content_type, headers = answer
        out = [
            STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode(),
            b"content-length: ",
            str(len(body)).encode(),
            b"\r\n",
        ]
        if content_type:
            out += (b"content-type: ", content_type, b"\r\n")
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        out.append(self._date_header())
        # A stopping connection still answers every request it has already read.
        closing = not exchange.keep_alive or (self._stopping and not self._pending)
        out.append(b"connection: close\r\n\r\n" if closing else b"\r\n")
        # An answer to HEAD, whatever its route or status, is its headers alone (RFC 9110
        # 9.3.2): a body here would be read by the client as the start of its next answer.
        if exchange.method != "HEAD":
            out.append(body)
        transport.write(b"".join(out))
        if closing:
            if isinstance(exchange.refusal, BadHttp):
                self._linger()
            elif exchange.complete:
                self._close()
            else:
                # A refused request whose body is still coming: read it to the end and
                # drop it (on_message_complete closes), unless the client goes silent.
                self._stopping = True
            return False
        return True

    # -- shutdown -----------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop taking requests: close now if idle, else after the answers already owed.

        A request part way through arriving is read to its end and answered too: its
        client sent it before the stop and cannot tell it from one that was complete.
        """
        self._stopping = True
        if self._parsing is None:
            self._stop_reading()
            if self._answering is None and not self._pending:
                self._close()

    def evictable(self, now: float) -> bool:
        """Idle between requests, or silent a while since it opened: room to reclaim.

        A connection just opened has not had its turn to send yet, so it is not idle
        until it has been silent for ``_FRESH_GRACE_S``.
        """
        return (
            self._parsing is None
            and not self._pending
            and self._answering is None
            and self._lingering_since is None
            and not self.lost
            and (self._began_at > 0 or now - self._last_active > _FRESH_GRACE_S)
        )

    @property
    def last_active(self) -> float:
        """When the client last sent bytes or got an answer (time.monotonic)."""
        return self._last_active

    def close_idle(self) -> None:
        """Close an idle connection to make room for another (the server is at its cap)."""
        self._stopping = True
        self._close()
        # Its room is free now, for the connections accepted before it is fully closed.
        self._connections.discard(self)

    @property
    def reading(self) -> bool:
        """Part of a request has arrived (or a refused body is being read and dropped)."""
        return self._parsing is not None or self._stopping

    def sweep(self, now: float) -> None:
        """Enforce the time limits: called by the server about once a second.

        A request whose header block has taken longer than ``header_timeout_s``, or
        whose body is slower than ``body_timeout_s`` plus its size at
        ``body_min_bytes_per_s``, is answered 408 in its turn and the connection
        closes, however steadily its bytes trickle. Otherwise the connection closes if
        nothing is owed to the client and it has been silent too long:
        ``keep_alive_s`` between requests and ``read_timeout_s`` part way through one.
        """
        if self._lingering_since is not None:
            if now - self._lingering_since > _LINGER_S:
                self.abort()
            return
        if self._sending_too_slowly(now):
            return
        # Answers go out in order, so an unfinished request at the head means none is owed.
        if self._answering is not None or (self._pending and self._pending[0].ready):
            return
        if self.reading:
            limit = self._limits.read_timeout_s
        elif not self._began_at:
            # Not one byte since it opened: a client that connects has a request to send.
            limit = self._limits.header_timeout_s
        else:
            limit = self._limits.keep_alive_s
        if now - self._last_active > limit:
            self._close()

    def _sending_too_slowly(self, now: float) -> bool:
        """Refuse (408) a request that is taking too long to arrive; whether it did."""
        exchange = self._parsing
        if exchange is None or self._transport is None or self._transport.is_closing():
            return False
        limits = self._limits
        if self._in_headers:
            if now - self._began_at <= limits.header_timeout_s:
                return False
            message = f"the request headers took longer than {limits.header_timeout_s:g} s"
        else:
            if exchange.expects_continue and not exchange.continued:
                return False  # the client is waiting for our 100 Continue, not sending
            allowed = limits.body_timeout_s + exchange.size / limits.body_min_bytes_per_s
            if now - self._body_since <= allowed:
                return False
            message = (
                f"the request body arrived slower than {limits.body_min_bytes_per_s} bytes a "
                f"second after the first {limits.body_timeout_s:g} s"
            )
        self._refuse_connection(408, message)
        return True

    def abort(self) -> None:
        """Close at once, dropping whatever is still being answered."""
        if self._answering is not None:
            # A task cancelled before its first step never runs its body.
            self._started()
            self._answering.cancel()
        if self._transport is not None:
            self._transport.abort()

    # -- helpers ------------------------------------------------------------------

    def _started(self) -> None:
        if self._unstarted:
            self._unstarted = False
            self._arrivals.unstarted -= 1

    def _ignore_upgrade(self) -> bool:
        """Serve a request that asked to upgrade as HTTP/1.1; whether to parse on.

        RFC 9110 (7.8) lets a server ignore Upgrade, and ``curl --http2`` sends its
        POST with ``Upgrade: h2c`` and the body right behind the headers. httptools has
        skipped that body and stops; a fresh parser reads it, behind a made-up head
        that frames it as the original did, then the requests that follow.
        """
        exchange = self._pending[-1] if self._pending else None
        if exchange is None or not exchange.keep_alive or exchange.method == "CONNECT":
            # Nothing after a tunnel request or a refused one is HTTP to us: answer, close.
            if exchange is not None:
                exchange.keep_alive = False
            self._stop_reading()
            return False
        if not exchange.upgrade_body:
            self._parser = httptools.HttpRequestParser(self)
            return True
        framing, exchange.upgrade_body = exchange.upgrade_body, b""
        self._parser = httptools.HttpRequestParser(_UpgradedBody(self, exchange))
        self._parser.feed_data(b"POST / HTTP/1.1\r\n" + framing + b"\r\n")
        return True

    def _body_refusal(self, exchange: Exchange) -> KeelError | None:
        limit = self._limits.max_body_bytes
        for name, value in exchange.headers:
            if name == b"content-length":
                # httptools has refused a Content-Length that is not a number already.
                length = int(value)
                if length > limit:
                    return body_too_large(limit, length)
        return None

    def _refuse_headers(self) -> None:
        limit = self._limits.max_header_bytes
        self._refuse_connection(431, f"request headers exceed {limit} bytes")

    def _refuse_connection(self, status: int, message: str) -> None:
        """Bytes that are not an acceptable request: answer in turn, then close; read no more.

        A request whose headers were read is refused in its own place, so the answer
        does not wait behind a body that will never be finished.
        """
        self._stop_reading()
        self._stopping = True
        in_headers = self._in_headers
        exchange, self._parsing = self._parsing, None
        if exchange is None or exchange not in self._pending:
            if exchange is not None and not in_headers and exchange.refusal is not None:
                # Refused and answered already, its body was being dropped: just close.
                self._close()
                return
            exchange = Exchange()
            self._pending.append(exchange)
        exchange.refusal = BadHttp(status, message)
        exchange.complete = True
        exchange.keep_alive = False
        exchange.buffer = b""
        self._advance()

    def _stop_reading(self) -> None:
        if not self._paused and self._transport is not None and not self.lost:
            self._paused = True
            self._transport.pause_reading()

    def _resume_after_turn(self) -> None:
        # Unless reading was paused meanwhile for a reason of its own (pipelined requests
        # piling up, a client not reading its answers, a refusal).
        if len(self._pending) <= _PIPELINE_DEPTH:
            self._resume_reading()

    def _resume_reading(self) -> None:
        if (
            self._paused
            # A stopping connection still reads the request it is part way through.
            and (not self._stopping or self._parsing is not None)
            and self._writable.is_set()
            and self._transport is not None
            and not self.lost
        ):
            self._paused = False
            self._transport.resume_reading()

    def _linger(self) -> None:
        """Close after a refusal: our side at once, theirs once read out or after a while."""
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if not transport.can_write_eof():
            self._close()
            return
        transport.write_eof()
        self._lingering_since = time.monotonic()
        self._parsing = None
        if self._paused:
            self._paused = False
            transport.resume_reading()

    def _close(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()


class _HeadersTooLarge(Exception):
    """Raised inside a parser callback; data_received answers 431."""


class BadHttp(KeelError):
    """Bytes that are not an acceptable HTTP request; answered with ``status``, then closed."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class _UpgradedBody:
    """The parser's callbacks after an ignored Upgrade: a made-up head, then the connection's.

    The made-up head frames the body that followed the original request's headers;
    its URL and headers are not a request and are dropped, its body and end go to
    the original exchange. Every message after it is the connection's own. A class
    of its own, so that the connection's callbacks, run for every request, need no
    check for this rare case.
    """

    def __init__(self, connection: HttpConnection, exchange: Exchange) -> None:
        self._connection = connection
        self._exchange: Exchange | None = exchange

    def on_message_begin(self) -> None:
        if self._exchange is None:
            self._connection.on_message_begin()
        else:
            self._connection.resume(self._exchange)

    def on_url(self, url: bytes) -> None:
        if self._exchange is None:
            self._connection.on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        if self._exchange is None:
            self._connection.on_header(name, value)

    def on_headers_complete(self) -> None:
        if self._exchange is None:
            self._connection.on_headers_complete()
        else:
            self._connection.resume_body()

    def on_body(self, body: bytes) -> None:
        self._connection.on_body(body)

    def on_message_complete(self) -> None:
        self._exchange = None
        self._connection.on_message_complete()


def bad_http_answer(refusal: BadHttp) -> Reply:
    """The answer to bytes the connection could not take as a request."""
    body = orjson.dumps({"error": str(refusal)})
    return Reply(refusal.status, body)


def _body_framing(headers: list[tuple[bytes, bytes]]) -> bytes:
    """The headers that say how a request's body is framed, as header lines."""
    return b"".join(
        name + b": " + value + b"\r\n"
        for name, value in headers
        if name in (b"content-length", b"transfer-encoding")
    )


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.removeprefix("HPE_").lower() or type(exc).__name__
