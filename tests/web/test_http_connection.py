"""keel's HTTP/1.1 connection over real loopback sockets, answered by a small echoing answerer.

The answerer here stands in for keel's routing only; everything the connection
owns (parsing, order, limits, keep-alive, refusals, shutdown) runs for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import orjson
import uvloop

from keel.serving.arrivals import Arrivals
from keel.serving.calls import Reply
from keel.settings import ServerSettings
from keel.web.http_connection import (
    BadHttp,
    Exchange,
    HttpConnection,
    bad_http_answer,
)

LIMITS = ServerSettings(
    max_body_bytes=1024,
    keep_alive_s=5.0,
    read_timeout_s=0.3,
    max_header_bytes=4096,
    header_timeout_s=1.0,
    body_timeout_s=1.0,
    body_min_bytes_per_s=256,
)


async def echo(exchange: Exchange, connection: HttpConnection) -> Reply:
    """Answers what it was asked; ``/slow/N`` first waits N milliseconds."""
    if isinstance(exchange.refusal, BadHttp):
        return bad_http_answer(exchange.refusal)
    if exchange.refusal is not None:
        return Reply(413, str(exchange.refusal).encode(), b"")
    if exchange.path.startswith("/slow/"):
        await asyncio.sleep(int(exchange.path.rsplit("/", 1)[1]) / 1000)
    body = orjson.dumps(
        {"method": exchange.method, "path": exchange.path, "body": exchange.body.decode()}
    )
    return Reply(200, body)


class Served:
    def __init__(self, server: asyncio.Server, connections: set[HttpConnection]) -> None:
        self.server = server
        self.connections = connections
        self.port = server.sockets[0].getsockname()[1]

    async def exchange(self, raw: bytes, read_until_close: bool = False) -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        writer.write(raw)
        await writer.drain()
        try:
            if read_until_close:
                return await asyncio.wait_for(reader.read(), 5)
            return await asyncio.wait_for(_read_answers(reader, raw.count(b"HTTP/1.")), 5)
        finally:
            writer.close()


async def _read_answers(reader: asyncio.StreamReader, count: int) -> bytes:
    out = b""
    for _ in range(count):
        head = await reader.readuntil(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        out += head + (await reader.readexactly(length) if b" 100 " not in head[:13] else b"")
    return out


@asynccontextmanager
async def serving(
    answerer: Callable[[Exchange, HttpConnection], Awaitable[Reply]] = echo,
    limits: ServerSettings = LIMITS,
) -> AsyncIterator[Served]:
    connections: set[HttpConnection] = set()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: HttpConnection(answerer, limits, connections, lambda: b"date: now\r\n"),
        "127.0.0.1",
        0,
    )
    try:
        yield Served(server, connections)
    finally:
        server.close()
        for connection in list(connections):
            connection.abort()


def run(test: Callable[[], Awaitable[None]]) -> None:
    uvloop.run(test())


def post(path: str, body: bytes, *extra: str) -> bytes:
    head = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(body)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


def test_pipelined_requests_are_answered_in_the_order_they_came() -> None:
    async def scenario() -> None:
        async with serving() as served:
            raw = post("/slow/80", b"first") + post("/fast", b"second") + post("/slow/10", b"3")
            answers = await served.exchange(raw)
        bodies = [orjson.loads(part.split(b"\r\n\r\n")[1]) for part in _split(answers)]
        assert [b["body"] for b in bodies] == ["first", "second", "3"]

    run(scenario)


def _split(answers: bytes) -> list[bytes]:
    return [b"HTTP/1.1" + part for part in answers.split(b"HTTP/1.1")[1:]]


def test_an_answer_is_one_write_with_length_date_and_the_answerers_headers() -> None:
    async def scenario() -> None:
        async with serving() as served:
            answer = await served.exchange(post("/x", b"hello"))
        head, body = answer.split(b"\r\n\r\n", 1)
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 200 OK"
        assert f"content-length: {len(body)}".encode() in lines
        assert b"content-type: application/json" in lines
        assert b"date: now" in lines
        assert b"connection: close" not in lines
        assert orjson.loads(body) == {"method": "POST", "path": "/x", "body": "hello"}

    run(scenario)


def test_a_declared_body_over_the_limit_is_refused_before_it_is_sent_then_closed() -> None:
    async def scenario() -> None:
        async with serving() as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            # Only the headers go out: the answer must not wait for the body.
            writer.write(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 5000\r\n\r\n")
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 413 ")
            assert b"connection: close" in head
            # The body still arriving is read and dropped, then the connection closes.
            writer.write(b"x" * 5000)
            await writer.drain()
            rest = await asyncio.wait_for(reader.read(), 5)
            assert b"5000 bytes; the limit is 1024" in rest
            writer.close()

    run(scenario)


def test_a_chunked_body_is_cut_off_at_the_limit() -> None:
    async def scenario() -> None:
        async with serving() as served:
            chunk = b"y" * 600
            raw = (
                b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"%x\r\n" % len(chunk) + chunk + b"\r\n"
                + b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n"
            )  # fmt: skip
            answer = await served.exchange(raw, read_until_close=True)
        assert answer.startswith(b"HTTP/1.1 413 ")
        assert b"exceeds the limit of 1024 bytes" in answer

    run(scenario)


def test_a_chunked_body_within_the_limit_arrives_whole() -> None:
    async def scenario() -> None:
        async with serving() as served:
            raw = (
                b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
                b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
            )
            answer = await served.exchange(raw)
        assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["body"] == "abcde"

    run(scenario)


def test_expect_100_continue_is_answered_before_the_body_is_sent() -> None:
    async def scenario() -> None:
        async with serving() as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(
                b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n"
            )
            interim = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
            writer.write(b"body")
            answer = await asyncio.wait_for(_read_answers(reader, 1), 5)
            assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["body"] == "body"
            writer.close()

    run(scenario)


def test_bytes_that_are_not_http_get_400_and_the_connection_closes() -> None:
    async def scenario() -> None:
        async with serving() as served:
            answer = await served.exchange(b"\x16\x03\x01 not http at all\r\n\r\n", True)
        assert answer.startswith(b"HTTP/1.1 400 ")
        assert b"connection: close" in answer
        assert b"malformed HTTP request" in answer

    run(scenario)


def test_oversized_headers_get_431() -> None:
    async def scenario() -> None:
        async with serving() as served:
            huge = "X-Filler: " + "a" * 70_000
            answer = await served.exchange(post("/x", b"", huge), read_until_close=True)
        assert answer.startswith(b"HTTP/1.1 431 ")

    run(scenario)


def test_a_request_before_garbage_is_still_answered_first() -> None:
    async def scenario() -> None:
        async with serving() as served:
            answer = await served.exchange(post("/slow/50", b"ok") + b"garbage\r\n\r\n", True)
        parts = _split(answer)
        assert parts[0].startswith(b"HTTP/1.1 200 ")
        assert parts[1].startswith(b"HTTP/1.1 400 ")

    run(scenario)


def test_http_1_0_and_connection_close_end_the_connection_after_the_answer() -> None:
    async def scenario() -> None:
        async with serving() as served:
            old = await served.exchange(b"GET /a HTTP/1.0\r\n\r\n", read_until_close=True)
            closing = await served.exchange(
                b"GET /b HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", read_until_close=True
            )
        for answer in (old, closing):
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert b"connection: close" in answer

    run(scenario)


def test_head_gets_the_headers_without_the_body() -> None:
    async def scenario() -> None:
        async with serving() as served:
            answer = await served.exchange(
                b"HEAD /a HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n", read_until_close=True
            )
        head, body = answer.split(b"\r\n\r\n", 1)
        assert b"content-length: " in head
        assert body == b""

    run(scenario)


def test_an_idle_connection_is_closed_by_the_sweep_after_keep_alive() -> None:
    async def scenario() -> None:
        async with serving() as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(post("/x", b"one"))
            await asyncio.wait_for(_read_answers(reader, 1), 5)
            (connection,) = served.connections
            # Idle between requests: the read timeout does not apply, keep-alive does.
            connection.sweep(time.monotonic() + LIMITS.read_timeout_s + 0.01)
            assert not connection.lost
            connection.sweep(time.monotonic() + LIMITS.keep_alive_s + 0.01)
            assert await asyncio.wait_for(reader.read(), 5) == b""
            writer.close()

    run(scenario)


def test_a_connection_silent_part_way_through_a_request_is_closed_after_the_read_timeout() -> None:
    async def scenario() -> None:
        async with serving() as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 10\r\n\r\nhalf")
            await writer.drain()
            while not served.connections or not next(iter(served.connections)).reading:
                await asyncio.sleep(0.01)
            (connection,) = served.connections
            connection.sweep(time.monotonic())
            assert not connection.lost
            connection.sweep(time.monotonic() + LIMITS.read_timeout_s + 0.01)
            # Closed part way through a request: a reset is a close too.
            with contextlib.suppress(ConnectionResetError):
                assert await asyncio.wait_for(reader.read(), 5) == b""
            assert connection.lost
            writer.close()

    run(scenario)


def test_shutdown_answers_the_request_in_flight_then_closes() -> None:
    async def scenario() -> None:
        async with serving() as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(post("/slow/200", b"in flight"))
            await writer.drain()
            while not served.connections:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            for connection in list(served.connections):
                connection.shutdown()
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert b"connection: close" in answer
            assert b"in flight" in answer
            writer.close()

    run(scenario)


def test_an_answerer_that_raises_costs_one_500_and_the_connection_lives_on() -> None:
    async def flaky(exchange: Exchange, connection: HttpConnection) -> Reply:
        if exchange.path == "/boom":
            raise RuntimeError("a bug")
        return await echo(exchange, connection)

    async def scenario() -> None:
        async with serving(flaky) as served:
            answers = _split(await served.exchange(post("/boom", b"") + post("/fine", b"")))
        assert answers[0].startswith(b"HTTP/1.1 500 ")
        assert b"a bug" not in answers[0]
        assert answers[1].startswith(b"HTTP/1.1 200 ")

    run(scenario)


def test_a_client_that_shuts_its_side_after_sending_still_gets_its_answer() -> None:
    async def scenario() -> None:
        async with serving() as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(post("/slow/50", b"then eof"))
            writer.write_eof()
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(b"HTTP/1.1 200 ")
            assert b"then eof" in answer
            writer.close()

    run(scenario)


def test_a_client_that_never_reads_its_answers_stops_being_read_from() -> None:
    big = b"z" * 65536

    async def large(exchange: Exchange, connection: HttpConnection) -> Reply:
        return Reply(200, big, b"text/plain")

    async def scenario() -> None:
        async with serving(large) as served:
            _, writer = await asyncio.open_connection("127.0.0.1", served.port)
            # Many small pipelined requests, each answered with 64 KiB, never read.
            writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\n\r\n" * 2000)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(writer.drain(), 2.0)
            await asyncio.sleep(0.5)
            (connection,) = served.connections
            transport = connection._transport  # the write buffer is what must stay bounded
            assert transport is not None
            # Answers owed pile up neither in the write buffer nor as parsed requests:
            # a few pipeline depths of 64 KiB answers at the very most.
            assert transport.get_write_buffer_size() < 40 * len(big)
            writer.close()

    run(scenario)


def test_a_request_read_is_counted_as_arriving_until_its_answer_starts_or_is_dropped() -> None:
    async def scenario() -> None:
        arrivals = Arrivals()
        seen: list[int] = []

        async def answerer(exchange: Exchange, connection: HttpConnection) -> Reply:
            seen.append(arrivals.unstarted)
            return await echo(exchange, connection)

        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        try:
            connection = HttpConnection(answerer, LIMITS, set(), lambda: b"", arrivals)
            await loop.connect_accepted_socket(lambda: connection, ours)
            connection.data_received(post("/a", b"1"))
            assert arrivals.expected()
            await asyncio.sleep(0.05)
            assert seen == [0]
            assert not arrivals.expected()
            # Read, but the connection is dropped before its answer ever starts.
            connection.data_received(post("/b", b"2"))
            assert arrivals.unstarted == 1
            connection.abort()
            await asyncio.sleep(0.05)
            assert seen == [0]
            assert arrivals.unstarted == 0
        finally:
            theirs.close()

    run(scenario)


def test_a_header_line_that_never_ends_is_refused_at_the_limit_not_buffered() -> None:
    async def scenario() -> None:
        async with serving() as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\nX-Endless: ")
            first = asyncio.create_task(reader.read(12))
            sent = 0
            # httptools holds an unfinished line itself: only counting what is fed bounds it.
            with contextlib.suppress(ConnectionResetError, BrokenPipeError):
                while sent < 64 * LIMITS.max_header_bytes and not first.done():
                    writer.write(b"a" * 1024)
                    await writer.drain()
                    await asyncio.sleep(0.001)
                    sent += 1024
            assert await asyncio.wait_for(first, 5) == b"HTTP/1.1 431"
            assert sent < 4 * LIMITS.max_header_bytes
            # The refusal is readable in full, then the connection closes.
            assert b"exceed 4096 bytes" in await asyncio.wait_for(reader.read(), 5)
            writer.close()

    run(scenario)


def test_an_endless_chunk_size_line_or_trailer_is_refused() -> None:
    async def scenario() -> None:
        async with serving() as served:
            head = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            for start, endless in ((b"1;ext=", b"e"), (b"1\r\na\r\n0\r\nX-Trailer: ", b"t")):
                reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
                writer.write(head + start)
                await writer.drain()
                await asyncio.sleep(0.05)
                # Counted from the parser's last progress, in the reads that follow it.
                for _ in range(3):
                    writer.write(endless * 4096)
                    await writer.drain()
                    await asyncio.sleep(0.01)
                answer = await asyncio.wait_for(reader.read(), 5)
                assert answer.startswith(b"HTTP/1.1 400 "), answer[:80]
                assert b"chunk-size lines or trailers exceed 4096 bytes" in answer
                writer.close()

    run(scenario)


def test_a_body_of_one_byte_chunks_is_kept_in_one_buffer() -> None:
    async def scenario() -> None:
        seen: list[Exchange] = []

        async def keep(exchange: Exchange, connection: HttpConnection) -> Reply:
            seen.append(exchange)
            return await echo(exchange, connection)

        async with serving(keep) as served:
            body = b"0123456789" * 100
            chunks = b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body)))
            head = b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
            answer = await served.exchange(head + chunks + b"0\r\n\r\n")
        assert orjson.loads(answer.split(b"\r\n\r\n", 1)[1])["body"] == body.decode()
        assert isinstance(seen[0].body, bytes)

    run(scenario)


def test_a_malformed_chunk_size_is_answered_400_at_once() -> None:
    async def scenario() -> None:
        async with serving() as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
            # Not after the read timeout: the refusal takes the unfinished request's place.
            answer = await asyncio.wait_for(reader.read(), 1.0)
            assert answer.startswith(b"HTTP/1.1 400 ")
            assert b"chunk size" in answer
            writer.close()

    run(scenario)


# A client trickling a byte at a time is never silent for the read timeout.
TRICKLING = LIMITS.model_copy(update={"read_timeout_s": 30.0})


def test_headers_trickled_past_the_header_timeout_get_408() -> None:
    async def scenario() -> None:
        async with serving(limits=TRICKLING) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"GET /x HTTP/1.1\r\nHost: t\r\n")
            await writer.drain()
            while not served.connections or not next(iter(served.connections)).reading:
                await asyncio.sleep(0.01)
            (connection,) = served.connections
            # A byte a moment keeps the read timeout from firing; the header deadline does not.
            connection.sweep(time.monotonic() + LIMITS.header_timeout_s / 2)
            assert not connection.lost
            connection.sweep(time.monotonic() + LIMITS.header_timeout_s + 0.01)
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert b"headers took longer" in answer
            writer.close()

    run(scenario)


def test_a_body_slower_than_the_minimum_rate_gets_408() -> None:
    async def scenario() -> None:
        async with serving(limits=TRICKLING) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(
                b"POST /x HTTP/1.1\r\nHost: t\r\nContent-Length: 1000\r\n\r\n" + b"b" * 256
            )
            await writer.drain()
            while not served.connections or not next(iter(served.connections)).reading:
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.05)
            (connection,) = served.connections
            # 256 bytes buy one second at 256 bytes a second, after the grace of one.
            allowed = LIMITS.body_timeout_s + 256 / LIMITS.body_min_bytes_per_s
            connection.sweep(time.monotonic() + allowed - 0.2)
            assert not connection.lost
            connection.sweep(time.monotonic() + allowed + 0.01)
            answer = await asyncio.wait_for(reader.read(), 5)
            assert answer.startswith(b"HTTP/1.1 408 ")
            assert b"256 bytes a second" in answer
            writer.close()

    run(scenario)


def test_head_on_any_answer_sends_no_body_and_the_next_request_reads_cleanly() -> None:
    async def refuse(exchange: Exchange, connection: HttpConnection) -> Reply:
        if exchange.path == "/post-only":
            return Reply(405, b'{"error":"no"}')
        return await echo(exchange, connection)

    async def scenario() -> None:
        async with serving(refuse) as served:
            reader, writer = await asyncio.open_connection("127.0.0.1", served.port)
            writer.write(b"HEAD /post-only HTTP/1.1\r\nHost: t\r\n\r\n" + post("/next", b"after"))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
            assert head.startswith(b"HTTP/1.1 405 ")
            # The next bytes are the next answer, not the 405's body.
            following = await asyncio.wait_for(_read_answers(reader, 1), 5)
            assert following.startswith(b"HTTP/1.1 200 ")
            assert b"after" in following
            writer.close()

    run(scenario)


def test_an_upgrade_to_h2c_is_ignored_and_the_body_is_read() -> None:
    async def scenario() -> None:
        async with serving() as served:
            upgrade = (
                "Connection: Upgrade, HTTP2-Settings",
                "Upgrade: h2c",
                "HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA",
            )
            chunked = (
                b"POST /c HTTP/1.1\r\nHost: t\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n"
                b"Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
            )
            raw = post("/x", b'{"a": 1}', *upgrade) + chunked + post("/y", b"then")
            answers = _split(await served.exchange(raw))
        bodies = [orjson.loads(part.split(b"\r\n\r\n", 1)[1])["body"] for part in answers]
        assert bodies == ['{"a": 1}', "abc", "then"]
        assert all(part.startswith(b"HTTP/1.1 200 ") for part in answers)

    run(scenario)
