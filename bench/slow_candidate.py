"""A stand-in remote shadow candidate: answers Open Inference Protocol ``infer`` slowly, or never.

It answers every ``POST .../infer`` with the same valid v2 response after
``--delay-ms``, or with ``--hang`` reads requests and never answers. It costs
next to no CPU, so what a benchmark measures against it is keel's own cost of
mirroring to a slow or dead candidate, not the candidate's.

    python bench/slow_candidate.py --port 8098 --delay-ms 4
    python bench/slow_candidate.py --port 8098 --hang
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import typing

import orjson
import uvloop
from fixed_response_server import _content_length

VERSION = "slow-candidate"
INFER_BODY = orjson.dumps(
    {
        "model_name": "candidate",
        "model_version": VERSION,
        "outputs": [
            {"name": "label", "datatype": "INT64", "shape": [1], "data": [1]},
            {"name": "probabilities", "datatype": "FP32", "shape": [1, 2], "data": [0.1, 0.9]},
        ],
    }
)
METADATA_BODY = orjson.dumps({"name": "candidate", "versions": [VERSION], "platform": "bench"})


def _response(body: bytes) -> bytes:
    return (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(body)).encode()
        + b"\r\n\r\n"
        + body
    )


class _Slow(asyncio.Protocol):
    def __init__(self, delay_s: float | None) -> None:
        self.delay_s = delay_s
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = typing.cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        buffer = self.buffer + data
        while True:
            end = buffer.find(b"\r\n\r\n")
            if end < 0:
                break
            head = buffer[:end].lower()
            length = _content_length(head)
            if len(buffer) < end + 4 + length:
                break
            buffer = buffer[end + 4 + length :]
            self._answer(head.startswith(b"get"))
        self.buffer = buffer

    def _answer(self, metadata: bool) -> None:
        assert self.transport is not None
        if metadata:
            self.transport.write(_response(METADATA_BODY))
        elif self.delay_s is not None:
            loop = asyncio.get_running_loop()
            loop.call_later(self.delay_s, self._write, _response(INFER_BODY))

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


async def serve(host: str, port: int, delay_s: float | None) -> None:
    loop = asyncio.get_running_loop()
    stop: asyncio.Future[None] = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    server = await loop.create_server(lambda: _Slow(delay_s), host, port)
    async with server:
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8098)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    parser.add_argument("--hang", action="store_true", help="never answer infer requests")
    args = parser.parse_args()
    uvloop.run(serve(args.host, args.port, None if args.hang else args.delay_ms / 1000.0))


if __name__ == "__main__":
    main()
