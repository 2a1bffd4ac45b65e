"""keel's ASGI app driven in-process: µs per request without sockets or a server, and a profile.

The HTTP benchmarks measure the whole server on a noisy shared machine. This
isolates the application — Starlette's routing and middleware, keel's
handlers, the batcher and its hop to an inference thread — by calling the ASGI
app directly with a ready-made request, the way an ASGI server would, many times in
a row. Repeats are short and the minimum is reported beside the median, so a
slow patch of the machine does not pass for a slow change. With ``--profile``
a further run is recorded by cProfile (slower, but the proportions hold).

    taskset -c 0 .venv/bin/python bench/app_profile.py --registry DIR \\
        breast-cancer@production --protocol records --concurrency 1 64 --profile out.prof
    .venv/bin/python -m pstats out.prof      # then: sort tottime, stats 25
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import statistics
import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import payloads
import uvloop

from keel.registry import Registry
from keel.serving.model_manager import ModelManager
from keel.settings import Settings

try:
    from keel.web.app import create_app
except ModuleNotFoundError:  # a commit from before the web edge had a package of its own
    from keel.serving.app import create_app  # type: ignore[no-redef]

PROTOCOLS: dict[str, Callable[..., payloads.Payload]] = {
    "records": payloads.records,
    "v2-json": payloads.v2_json,
    "v2-binary": payloads.v2_binary,
}
ASGIApp = Callable[[MutableMapping[str, Any], Any, Any], Awaitable[None]]


def request_scope(payload: payloads.Payload) -> dict[str, Any]:
    """The ASGI scope an ASGI server would build for ``payload`` on a keep-alive connection."""
    headers = [(k.lower().encode(), v.encode()) for k, v in payload.headers]
    headers += [(b"host", b"127.0.0.1:8080"), (b"content-length", str(len(payload.body)).encode())]
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.4"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": payload.path,
        "raw_path": payload.path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8080),
        "state": {},
    }


class Driver:
    """Sends one payload through the app, ``concurrency`` requests at a time."""

    def __init__(self, app: ASGIApp, payload: payloads.Payload, concurrency: int) -> None:
        self.app = app
        self.body = payload.body
        self.scope = request_scope(payload)
        self.concurrency = concurrency
        self.status: dict[int, int] = {}

    async def one(self) -> None:
        delivered = False

        async def receive() -> dict[str, Any]:
            nonlocal delivered
            if delivered:  # only a disconnect would come next; it never does here
                await asyncio.Event().wait()
            delivered = True
            return {"type": "http.request", "body": self.body, "more_body": False}

        async def send(message: MutableMapping[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.status[message["status"]] = self.status.get(message["status"], 0) + 1

        await self.app(dict(self.scope), receive, send)

    async def run(self, requests: int) -> float:
        """Seconds per request over ``requests`` requests."""
        started = time.perf_counter()
        if self.concurrency == 1:
            for _ in range(requests):
                await self.one()
        else:
            for _ in range(max(1, requests // self.concurrency)):
                await asyncio.gather(*(self.one() for _ in range(self.concurrency)))
            requests = max(1, requests // self.concurrency) * self.concurrency
        return (time.perf_counter() - started) / requests


async def profile(args: argparse.Namespace) -> None:
    settings = Settings(registry=args.registry)
    # No alias watching: a registry read in the middle of a timed run is noise.
    server = settings.server.model_copy(update={"watch_interval_s": 0})
    settings = settings.model_copy(update={"server": server})
    registry = Registry(args.registry)
    with ThreadPoolExecutor(max_workers=args.threads, thread_name_prefix="keel-infer") as pool:
        manager = ModelManager(registry, settings, pool)
        app = create_app(manager, settings, [args.ref])
        await manager.start([args.ref])
        try:
            metadata = registry.resolve(args.ref)
            measured = [
                await _measure(app, PROTOCOLS[protocol](metadata), protocol, concurrency, args)
                for protocol in args.protocol
                for concurrency in args.concurrency
            ]
        finally:
            await manager.close()
    if args.out:
        Path(args.out).write_text(json.dumps(measured, indent=1))


async def _measure(
    app: ASGIApp,
    payload: payloads.Payload,
    protocol: str,
    concurrency: int,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Time ``payload`` at ``concurrency``; print and return the fastest and median repeat."""
    driver = Driver(app, payload, concurrency)
    await driver.run(args.requests)  # warm-up
    times = [await driver.run(args.requests) for _ in range(args.repeats)]
    figures = {
        "protocol": protocol,
        "concurrency": concurrency,
        "min_us": round(min(times) * 1e6, 2),
        "median_us": round(statistics.median(times) * 1e6, 2),
        "status": {str(code): count for code, count in driver.status.items()},
    }
    print(
        f"{protocol:9} concurrency {concurrency:3}: min {min(times) * 1e6:7.1f} µs/request, "
        f"median {statistics.median(times) * 1e6:7.1f} (of {args.repeats} × {args.requests}); "
        f"status {driver.status}",
        flush=True,
    )
    if args.profile:
        recorder = cProfile.Profile()
        recorder.enable()
        await driver.run(args.requests)
        recorder.disable()
        name = f"{args.profile}.{protocol}.c{concurrency}" if _many(args) else args.profile
        recorder.dump_stats(name)
        print(f"  cProfile of {args.requests} requests written to {name}")
    return figures


def _many(args: argparse.Namespace) -> bool:
    return len(args.protocol) * len(args.concurrency) > 1


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("ref", help="NAME@ALIAS to serve")
    parser.add_argument("--registry", required=True)
    parser.add_argument("--protocol", nargs="+", choices=sorted(PROTOCOLS), default=["records"])
    parser.add_argument("--concurrency", nargs="+", type=int, default=[1, 64])
    parser.add_argument("--requests", type=int, default=1280, help="per timed repeat")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="inference threads")
    parser.add_argument("--profile", help="write a cProfile of one more run to this file")
    parser.add_argument("--out", help="write the figures as JSON to this file")
    uvloop.run(profile(parser.parse_args(argv)))


if __name__ == "__main__":
    main()
