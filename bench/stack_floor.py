"""The HTTP stack alone: what a request costs before any application work.

Three servers that read the whole request body and answer fixed JSON bytes:

* ``bare``: a plain ASGI callable under uvicorn + httptools + uvloop (the naive
  baseline's stack), uvicorn's own cost per request;
* ``starlette``: the same answer from a Starlette ``Route``, which adds the
  router, the request object and the default middleware;
* ``keel``: keel's own HTTP/1.1 connection (``keel.web.http_connection``),
  the stack keel's inference routes run on.

No model, no parsing: any server above these floors pays the difference.

    python bench/stack_floor.py --app bare --port 8098
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import uvicorn
import uvloop
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from keel.settings import ServerSettings
from keel.serving.calls import Reply
from keel.web.http_connection import Exchange, HttpConnection

ANSWER = b'{"predictions":[{"label":1,"probabilities":[0.02,0.98]}]}'
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(ANSWER)).encode())]

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """Read the body, answer the fixed bytes; lifespan messages are acknowledged."""
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    more = True
    while more:
        message = await receive()
        more = message.get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})


async def _answer(request: Request) -> Response:
    await request.body()
    return Response(ANSWER, media_type="application/json")


def starlette_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/v1/models/{name}/predict", _answer, methods=["POST"]),
            Route("/", _answer, methods=["GET"]),
        ]
    )


_KEEL_ANSWER = Reply(200, ANSWER)


async def _keel_answer(exchange: Exchange, connection: HttpConnection) -> Reply:
    return _KEEL_ANSWER


async def serve_keel(host: str, port: int) -> None:
    """keel's HTTP connection answering every request with the fixed bytes, until killed."""
    connections: set[HttpConnection] = set()
    limits = ServerSettings()
    date = b"date: Thu, 01 Jan 2026 00:00:00 GMT\r\n"
    loop = asyncio.get_running_loop()
    await loop.create_server(
        lambda: HttpConnection(_keel_answer, limits, connections, lambda: date),
        host=host,
        port=port,
        backlog=2048,
    )
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--app", choices=("bare", "starlette", "keel"), required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.app == "keel":
        uvloop.run(serve_keel(args.host, args.port))
        return
    app = bare_app if args.app == "bare" else starlette_app()
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )


if __name__ == "__main__":
    main()
