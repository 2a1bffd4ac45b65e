"""Real requests through the server's own HTTP stack before it reports ready.

Warm-up inside ``start_version`` runs the model and the batcher, but the first
request over HTTP still ran code for the first time: the HTTP parser and
response path, keel's front, the handlers, orjson. Python 3.11 specialises
bytecode only after it has run a few times, so that first request took over
twice as long as the hundredth. Here each served version answers a few of its
own golden records, over loopback, through both inference APIs, before
``/v2/health/ready`` turns true. They are not traffic: they stay out of the
drift windows and out of the request metrics (``keel_requests_total``, latency,
batches), and are counted on their own in ``keel_warmup_requests_total``.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from keel.serving.model_manager import ModelManager
from keel.serving.protocols import datatype_of
from keel.serving.served_version import ServedVersion
from keel.shadow.http_client import CandidateHTTPError, HTTPPool
from keel.signature import to_arrays

log = logging.getLogger("keel.web")

REQUESTS_PER_ROUTE = 16
CONNECT_TIMEOUT_S = 10.0
# All of the warm-up: a server that stops answering must not hold readiness back for ever.
WARMUP_TIMEOUT_S = 60.0


async def warm_over_http(
    manager: ModelManager, host: str, port: int, unix_path: str | None = None
) -> None:
    """Send each ready version's golden records to its records and v2 routes, over HTTP.

    A worker warms itself through its private socket (``unix_path``): the shared port
    would hand the requests to whichever worker accepts them.
    """
    versions = [version for version in manager.versions() if version.ready]
    requests = [request for version in versions for request in _requests(version)]
    monitors = [v.monitor for v in versions if v.monitor is not None and v.monitor.enabled]
    if not requests:
        return
    # The same few golden rows over and over are not traffic: keep them out of drift,
    # and count them apart from the requests clients send.
    for monitor in monitors:
        monitor.enabled = False
    for version in versions:
        version.metrics.warming = True
    try:
        await _send_all(requests, _loopback(host), port, unix_path)
    finally:
        for monitor in monitors:
            monitor.enabled = True
        for version in versions:
            version.metrics.warming = False


async def _send_all(
    requests: list[tuple[str, bytes]], host: str, port: int, unix_path: str | None
) -> None:
    # The shadow's keep-alive client: keel has one HTTP/1.1 client, not one per use.
    pool = HTTPPool(f"http://{host}:{port}", size=1, unix_path=unix_path)
    try:
        async with asyncio.timeout(WARMUP_TIMEOUT_S):
            for count, (path, body) in enumerate(requests * REQUESTS_PER_ROUTE):
                if count == 0:
                    status = await _until_connected(pool, path, body)
                else:
                    status, _ = await pool.request("POST", path, body)
                if status != 200:
                    log.warning("warm-up request to %s was answered %d", path, status)
    except (OSError, CandidateHTTPError, TimeoutError) as exc:
        reason = f"no answer in {WARMUP_TIMEOUT_S:.0f} s" if isinstance(exc, TimeoutError) else exc
        log.warning("could not warm up over HTTP (%s); the first requests may be slower", reason)
    finally:
        pool.close()


async def _until_connected(pool: HTTPPool, path: str, body: bytes) -> int:
    """The status of one request, retried while the server may still be binding its socket."""
    deadline = asyncio.get_running_loop().time() + CONNECT_TIMEOUT_S
    while True:
        try:
            status, _ = await pool.request("POST", path, body)
            return status
        except CandidateHTTPError:
            if asyncio.get_running_loop().time() > deadline:
                raise
            await asyncio.sleep(0.05)


def _requests(version: ServedVersion) -> list[tuple[str, bytes]]:
    signature = version.metadata.signature
    record: dict[str, Any] = dict(version.metadata.golden.inputs[0])
    arrays = to_arrays([record], signature)
    v2_inputs = [
        {
            "name": name,
            "shape": list(array.shape),
            "datatype": datatype_of(array.dtype),
            "data": array.ravel().tolist(),
        }
        for name, array in arrays.items()
    ]
    base = f"/models/{version.name}/versions/{version.label}"
    return [
        (f"/v1{base}/predict", orjson.dumps({"instances": [record]})),
        (f"/v2{base}/infer", orjson.dumps({"inputs": v2_inputs})),
    ]


def _loopback(host: str) -> str:
    """The address to reach a server bound to ``host``, as a URL writes it."""
    address = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 - mapping a wildcard bind to loopback
    return f"[{address}]" if ":" in address else address
