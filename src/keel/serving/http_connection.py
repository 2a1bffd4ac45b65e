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
bytes that are not HTTP, an idle connection closed after ``keep_alive_s`` and one
silent part way through a request after ``read_timeout_s``.
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

from keel.errors import KeelError, PayloadTooLarge, ProtocolError
from keel.serving.arrivals import Arrivals

log = logging.getLogger("keel.serving")

# More requests than this parsed ahead of their answers, and reading pauses.
_PIPELINE_DEPTH = 16
# Header bytes one request may send; past it the connection is refused (431).
_MAX_HEADER_BYTES = 64 * 1024

STATUS_LINES: dict[int, bytes] = {
    int(status): f"HTTP/1.1 {int(status)} {status.phrase}\r\n".encode("latin-1")
    for status in HTTPStatus
}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class Exchange:
    """One request on its way through a connection: what was parsed, and the body so far."""

    __slots__ = (
        "body",
        "complete",
        "continued",
        "expects_continue",
        "headers",
        "http_version",
        "keep_alive",
        "method",
        "parts",
        "path",
        "query",
        "raw_path",
        "refusal",
        "size",
        "url",
    )

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.method = ""
        self.http_version = "1.1"
        self.path = ""
        self.raw_path = b""
        self.query = b""
        self.parts: list[bytes] = []
        self.size = 0
        self.body = b""
        self.keep_alive = True
        self.expects_continue = False
        self.continued = False
        self.complete = False
        # Set when the request is answered without being run: its body is not kept.
        self.refusal: KeelError | None = None

    @property
    def ready(self) -> bool:
        """Whether it can be answered now: all of its body is here, or it is refused anyway."""
        return self.complete or self.refusal is not None


class Answer(typing.NamedTuple):
    """A complete response: ``headers`` must not repeat Content-Length or Connection."""

    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    head_only: bool = False


INTERNAL_ERROR = Answer(
    500,
    [(b"content-type", b"application/json")],
    b'{"error":"internal error; the server logged the details"}',
)

Answerer = Callable[[Exchange, "HttpConnection"], Awaitable[Answer]]
"""Turns a complete (or refused) exchange into its answer; the server's routing."""


class ConnectionLimits(typing.NamedTuple):
    max_body_bytes: int
    # Silence allowed between requests, and part way through one.
    keep_alive_s: float
    read_timeout_s: float


class HttpConnection(asyncio.Protocol):
    """An asyncio protocol for one client connection; ``connections`` holds the open ones."""

    def __init__(
        self,
        answerer: Answerer,
        limits: ConnectionLimits,
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
        self._connections = connections
        self._date_header = date_header
        self._parser = httptools.HttpRequestParser(self)
        self._transport: asyncio.Transport | None = None
        self._parsing: Exchange | None = None
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
        self.peer: tuple[str, int] | None = None
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
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            # keel speaks HTTP/1.1 only: the request is answered as it is, and since the
            # parser stops at an upgrade, the connection closes after the answer.
            if self._pending:
                self._pending[-1].keep_alive = False
            self._stop_reading()
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeadersTooLarge):
                self._refuse_connection(431, f"request headers exceed {_MAX_HEADER_BYTES} bytes")
            else:
                log.error("HTTP connection failed while parsing", exc_info=exc.__context__)
                self._refuse_connection(400, "the request could not be read")
        except httptools.HttpParserError as exc:
            self._refuse_connection(400, f"malformed HTTP request: {_reason(exc)}")

    def eof_received(self) -> bool:
        """The client shut its side: answer what it already sent, then close."""
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

    def on_message_begin(self) -> None:
        self._parsing = Exchange()
        self._header_bytes = 0

    def on_url(self, url: bytes) -> None:
        exchange = self._exchange()
        exchange.url += url
        self._count_header_bytes(len(url))

    def on_header(self, name: bytes, value: bytes) -> None:
        exchange = self._exchange()
        name = name.lower()
        if name == b"expect" and value.lower() == b"100-continue":
            exchange.expects_continue = True
        exchange.headers.append((name, value))
        self._count_header_bytes(len(name) + len(value))

    def on_headers_complete(self) -> None:
        exchange = self._exchange()
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
        self._pending.append(exchange)
        if len(self._pending) > _PIPELINE_DEPTH:
            self._stop_reading()
        self._advance()

    def on_body(self, body: bytes) -> None:
        exchange = self._exchange()
        if exchange.refusal is not None:
            return
        exchange.size += len(body)
        if exchange.size > self._limits.max_body_bytes:
            exchange.refusal = PayloadTooLarge(
                f"the body exceeds the limit of {self._limits.max_body_bytes} bytes"
            )
            exchange.parts = []
            exchange.keep_alive = False
            self._advance()
            return
        exchange.parts.append(body)

    def on_message_complete(self) -> None:
        exchange = self._exchange()
        self._parsing = None
        exchange.complete = True
        if exchange.refusal is None:
            parts = exchange.parts
            exchange.body = parts[0] if len(parts) == 1 else b"".join(parts)
            exchange.parts = []
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
            self._answering = asyncio.get_running_loop().create_task(self._answer_ready())
            self._arrivals.unstarted += 1
            self._unstarted = True
        elif head.expects_continue and not head.continued and self._transport is not None:
            head.continued = True
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

    def _send(self, exchange: Exchange, answer: Answer) -> bool:
        """Write the answer; whether the connection stays open for the next one."""
        transport = self._transport
        if transport is None or self.lost:
            return False
        status, headers, body, head_only = answer
        out = [
            STATUS_LINES.get(status) or f"HTTP/1.1 {status} Unknown\r\n".encode(),
            b"content-length: ",
            str(len(body)).encode(),
            b"\r\n",
        ]
        for name, value in headers:
            out += (name, b": ", value, b"\r\n")
        out.append(self._date_header())
        # A stopping connection still answers every request it has already read.
        closing = not exchange.keep_alive or (self._stopping and not self._pending)
        out.append(b"connection: close\r\n\r\n" if closing else b"\r\n")
        if not head_only:
            out.append(body)
        transport.write(b"".join(out))
        if closing:
            if exchange.complete:
                self._close()
            else:
                # A refused request whose body is still coming: read it to the end and
                # drop it (on_message_complete closes), unless the client goes silent.
                self._stopping = True
            return False
        return True

    # -- shutdown -----------------------------------------------------------------

    def shutdown(self) -> None:
        """Stop taking requests: close now if idle, else after the answers already owed."""
        self._stopping = True
        self._stop_reading()
        if self._answering is None and not self._pending:
            self._close()

    @property
    def reading(self) -> bool:
        """Part of a request has arrived (or a refused body is being read and dropped)."""
        return self._parsing is not None or self._stopping

    def close_if_silent(self, now: float) -> None:
        """Close if nothing is owed to the client and it has been silent too long.

        Too long is ``keep_alive_s`` between requests and ``read_timeout_s`` part way
        through one (or while a refused body is still being read and dropped).
        """
        # Answers go out in order, so an unfinished request at the head means none is owed.
        if self._answering is not None or (self._pending and self._pending[0].ready):
            return
        limit = self._limits.read_timeout_s if self.reading else self._limits.keep_alive_s
        if now - self._last_active > limit:
            self._close()

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

    def _exchange(self) -> Exchange:
        if self._parsing is None:  # httptools calls on_message_begin first, always
            raise RuntimeError("HTTP callback outside a message")
        return self._parsing

    def _body_refusal(self, exchange: Exchange) -> KeelError | None:
        limit = self._limits.max_body_bytes
        for name, value in exchange.headers:
            if name == b"content-length":
                # httptools has refused a Content-Length that is not a number already.
                length = int(value)
                if length > limit:
                    return PayloadTooLarge(f"the body is {length} bytes; the limit is {limit}")
        return None

    def _count_header_bytes(self, count: int) -> None:
        self._header_bytes += count
        if self._header_bytes > _MAX_HEADER_BYTES:
            raise _HeadersTooLarge

    def _refuse_connection(self, status: int, message: str) -> None:
        """Bytes that are not HTTP: answer in turn, then close; nothing more is read."""
        self._stop_reading()
        self._stopping = True
        refusal = Exchange()
        refusal.complete = True
        refusal.keep_alive = False
        refusal.refusal = BadHttp(status, message)
        self._parsing = None
        self._pending.append(refusal)
        self._advance()

    def _stop_reading(self) -> None:
        if not self._paused and self._transport is not None and not self.lost:
            self._paused = True
            self._transport.pause_reading()

    def _resume_reading(self) -> None:
        if (
            self._paused
            and not self._stopping
            and self._writable.is_set()
            and self._transport is not None
            and not self.lost
        ):
            self._paused = False
            self._transport.resume_reading()

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


def bad_http_answer(refusal: BadHttp) -> Answer:
    """The answer to bytes the connection could not take as a request."""
    body = orjson.dumps({"error": str(refusal)})
    return Answer(refusal.status, [(b"content-type", b"application/json")], body)


def _reason(exc: Exception) -> str:
    text = str(exc)
    return text.removeprefix("HPE_").lower() or type(exc).__name__
