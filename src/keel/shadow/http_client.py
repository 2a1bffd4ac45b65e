"""A small HTTP/1.1 client for calling remote shadow candidates from the serving event loop.

Mirrored calls share the loop with the primary's requests, so what each costs
on the loop is what the primary pays. General-purpose clients cost far more
than a primary request does (measured on this project's 2-core machine, one
call to a loopback server: httpx about 3.9 ms of CPU, aiohttp about 0.9 ms),
so keel speaks just what a candidate call needs: one request at a time per
keep-alive connection, responses parsed by httptools (the parser keel's own
HTTP server reads requests with), and connections pooled up to the mirror's
concurrency. A connection whose call was abandoned (timeout) is closed, never
reused with a response still owed on it.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Sequence
from urllib.parse import urlsplit

import httptools

from keel.errors import KeelError

# A candidate's answer is a few outputs per row; anything this large is not one.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class CandidateHTTPError(KeelError):
    """The candidate's server could not be reached, or broke the protocol."""


class _Connection(asyncio.Protocol):
    """One keep-alive connection; at most one request in flight on it."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.parts: list[bytes] = []
        self.size = 0
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(CandidateHTTPError("the candidate closed the connection before answering"))

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(CandidateHTTPError(f"the candidate's answer is not valid HTTP: {exc}"))
            self.close()

    # httptools callbacks
    def on_body(self, body: bytes) -> None:
        self.size += len(body)
        if self.size > MAX_RESPONSE_BYTES:
            self._fail(CandidateHTTPError(f"answer larger than {MAX_RESPONSE_BYTES} bytes"))
            self.close()
            return
        self.parts.append(body)

    def on_message_complete(self) -> None:
        self.keep_alive = self.parser.should_keep_alive()
        waiter, self.waiter = self.waiter, None
        body = b"".join(self.parts)
        self.parts, self.size = [], 0
        if waiter is not None and not waiter.done():
            waiter.set_result((self.parser.get_status_code(), body))

    def request(self, head: bytes, body: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(head + body)
        return self.waiter

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        waiter, self.waiter = self.waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(error)


class HTTPPool:
    """Keep-alive connections to one ``http://`` or ``https://`` origin, at most ``size`` kept.

    With ``unix_path`` the connections go to that Unix socket instead of the URL's
    address (a worker's private socket); the URL still names the Host header.
    """

    def __init__(self, url: str, size: int, unix_path: str | None = None) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise KeelError(f"{url!r} is not an http:// or https:// URL")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self.size = size
        self.unix_path = unix_path
        default_port = (parts.scheme == "https" and self.port == 443) or self.port == 80
        self._host_header = parts.hostname if default_port else f"{parts.hostname}:{self.port}"
        self._idle: list[_Connection] = []

    async def request(
        self,
        method: str,
        path: str,
        body: bytes = b"",
        content_type: str = "application/json",
        headers: Sequence[tuple[str, str]] = (),
    ) -> tuple[int, bytes]:
        """Status and body of one request; the caller bounds it in time (``asyncio.timeout``)."""
        connection = await self._connection()
        extra = "".join(f"{name}: {value}\r\n" for name, value in headers)
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self._host_header}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
            f"Accept: application/json\r\n{extra}\r\n"
        ).encode("latin-1")
        try:
            status, answer = await connection.request(head, body)
        except BaseException:
            # Abandoned (timeout, cancellation) or broken: a response may still be owed.
            connection.close()
            raise
        if connection.keep_alive and not connection.closed and len(self._idle) < self.size:
            self._idle.append(connection)
        else:
            connection.close()
        return status, answer

    async def _connection(self) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if not connection.closed:
                return connection
        loop = asyncio.get_running_loop()
        try:
            if self.unix_path is not None:
                _, connection = await loop.create_unix_connection(_Connection, self.unix_path)
            else:
                _, connection = await loop.create_connection(
                    _Connection, self.host, self.port, ssl=self.ssl
                )
        except OSError as exc:
            where = self.unix_path or f"{self.host}:{self.port}"
            raise CandidateHTTPError(f"cannot connect to {where}: {exc.strerror or exc}") from None
        return connection

    def close(self) -> None:
        for connection in self._idle:
            connection.close()
        self._idle.clear()
