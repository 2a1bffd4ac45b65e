"""A gRPC server that answers every ModelInfer with fixed bytes: what a gRPC stack costs alone.

bench/grpc_throughput.py --floors serves this on each stack keel could stand on and
loads it as it loads the real servers, to choose the stack by measurement:

- ``grpcio-aio``: grpcio's asyncio server on uvloop (what keel uses);
- ``grpcio-aio-fine-switch``: the same with keel's GIL switch interval (0.5 ms);
- ``grpcio-threads``: grpcio's thread-pool server, answering on its threads;
- ``grpcio-threads-loop``: the same, each call answered on a uvloop event loop in
  another thread and waited for (the design keel tried and left);
- ``grpclib``: the pure-Python stack (h2) on uvloop, from its own environment.

    python bench/grpc_floor.py --stack grpcio-aio --port 9000
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from concurrent.futures import ThreadPoolExecutor
from typing import Any

SERVICE = "inference.GRPCInferenceService"
# About the size of keel's answer for one row of breast-cancer.
ANSWER = b"\x0a\x0dbreast-cancer" + b"\x00" * 120


def grpcio_aio(port: int) -> None:
    import grpc
    import uvloop

    async def infer(request: bytes, context: Any) -> bytes:
        return ANSWER

    async def serve() -> None:
        server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
        handler = grpc.unary_unary_rpc_method_handler(infer)
        server.add_generic_rpc_handlers(
            (grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler}),)
        )
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(serve())


def _thread_pool_server(port: int, infer: Any, threads: int) -> None:
    """grpcio's thread-pool server answering ModelInfer with ``infer``, until killed."""
    import grpc

    server = grpc.server(
        ThreadPoolExecutor(max_workers=threads), options=[("grpc.so_reuseport", 0)]
    )
    handler = grpc.unary_unary_rpc_method_handler(infer)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler(SERVICE, {"ModelInfer": handler}),)
    )
    server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    server.wait_for_termination()


def grpcio_threads(port: int) -> None:
    def infer(request: bytes, context: Any) -> bytes:
        return ANSWER

    _thread_pool_server(port, infer, threads=16)


def grpcio_threads_loop(port: int) -> None:
    import threading

    import uvloop

    loop = uvloop.new_event_loop()
    threading.Thread(target=loop.run_forever, daemon=True).start()

    async def answer(request: bytes) -> bytes:
        return ANSWER

    def infer(request: bytes, context: Any) -> bytes:
        return asyncio.run_coroutine_threadsafe(answer(request), loop).result()

    # As many threads as keel's thread-pool edge had.
    _thread_pool_server(port, infer, threads=64)


def grpclib_aio(port: int) -> None:
    import uvloop
    from grpclib.const import Cardinality, Handler
    from grpclib.encoding.proto import ProtoCodec
    from grpclib.server import Server

    class Bytes(ProtoCodec):  # type: ignore[misc]
        def encode(self, message: bytes, message_type: Any) -> bytes:
            return message

        def decode(self, data: bytes, message_type: Any) -> bytes:
            return data

    class Service:
        async def infer(self, stream: Any) -> None:
            await stream.recv_message()
            await stream.send_message(ANSWER)

        def __mapping__(self) -> dict[str, Any]:
            path = f"/{SERVICE}/ModelInfer"
            return {path: Handler(self.infer, Cardinality.UNARY_UNARY, None, None)}

    async def serve() -> None:
        server = Server([Service()], codec=Bytes())
        await server.start("127.0.0.1", port)
        await server.wait_closed()

    uvloop.run(serve())


STACKS = {
    "grpcio-aio": grpcio_aio,
    "grpcio-aio-fine-switch": grpcio_aio,
    "grpcio-threads": grpcio_threads,
    "grpcio-threads-loop": grpcio_threads_loop,
    "grpclib": grpclib_aio,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", choices=sorted(STACKS), required=True)
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    if args.stack == "grpcio-aio-fine-switch":
        sys.setswitchinterval(0.0005)
    asyncio.set_event_loop_policy(None)
    STACKS[args.stack](args.port)


if __name__ == "__main__":
    main()
