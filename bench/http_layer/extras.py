"""HTTP behaviours keel relies on, checked against keel's own layer and granian (RSGI).

    PYTHONPATH=/tmp/keel-head/src .venv/bin/python bench/http_layer/extras.py \\
        --registry /tmp/demo-registry --server granian --out /tmp/extras-granian.json

Pipelining order, Expect: 100-continue, an ``Upgrade: h2c`` POST (what
``curl --http2`` sends), a malformed chunk after a valid one (what the app is
handed), and how long idle connections live (before and after a request).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import threading
import time
from pathlib import Path
from typing import Any

from attacks import PREDICT, Server


def _body(registry: Path) -> bytes:
    from keel.registry import Registry

    meta = Registry(str(registry)).resolve("breast-cancer@production")
    return json.dumps({"instances": [meta.golden.inputs[0]]}).encode()


def _read_all(sock: socket.socket, wait_s: float) -> bytes:
    sock.settimeout(wait_s)
    data = b""
    try:
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except TimeoutError:
        pass
    return data


def _statuses(data: bytes) -> list[int]:
    return [int(chunk[:3]) for chunk in data.split(b"HTTP/1.1 ")[1:] if chunk[:3].isdigit()]


def pipelining(port: int, body: bytes) -> dict[str, Any]:
    """A bad request, a prediction and a 404, in one write: answered in that order?"""
    post = (f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n").encode() + body  # fmt: skip
    bad = (f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{]").encode()
    missing = b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(bad + post + missing)
        data = _read_all(sock, 1.5)
    return {"sent": "400-worthy, 200-worthy, 404-worthy", "statuses_in_order": _statuses(data)}


def expect_continue(port: int, body: bytes) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall((f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      f"Content-Length: {len(body)}\r\nExpect: 100-continue\r\n\r\n").encode())  # fmt: skip
        interim = _read_all(sock, 1.0)
        sock.sendall(body)
        final = _read_all(sock, 1.0)
    return {"interim": interim[:40].decode("latin-1"), "final_statuses": _statuses(final)}


def h2c_upgrade(port: int, body: bytes) -> dict[str, Any]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall((f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n"
                      "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"
                      f"Content-Length: {len(body)}\r\n\r\n").encode() + body)  # fmt: skip
        data = _read_all(sock, 1.5)
    return {"statuses": _statuses(data), "head": data[:60].decode("latin-1")}


def bad_chunk_after_good(port: int) -> dict[str, Any]:
    """A valid 5-byte chunk, then a chunk size that is not hex: what does the app get?"""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall((f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                      "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"ins\r\nzz\r\n").encode())  # fmt: skip
        data = _read_all(sock, 2.0)
    return {"statuses": _statuses(data), "answer": data[-160:].decode("latin-1")}


def idle_lifetime(port: int, body: bytes | None, cap_s: float) -> dict[str, Any]:
    """Seconds until the server closes a silent connection (after one request if ``body``)."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        if body is not None:
            sock.sendall((f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                          f"Content-Length: {len(body)}\r\n\r\n").encode() + body)  # fmt: skip
            sock.settimeout(5)
            sock.recv(65536)
        started = time.monotonic()
        sock.settimeout(cap_s)
        try:
            while True:
                if not sock.recv(65536):
                    return {"closed_after_s": round(time.monotonic() - started, 1)}
        except TimeoutError:
            return {"closed_after_s": None, "still_open_at_s": cap_s}
        except OSError as exc:
            return {
                "closed_after_s": round(time.monotonic() - started, 1),
                "how": type(exc).__name__,
            }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--server", choices=["keel", "granian"], required=True)
    parser.add_argument("--idle-cap", type=float, default=80.0)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--logs", type=Path, default=Path("/tmp/keel-http-layer-logs"))
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    args.logs.mkdir(parents=True, exist_ok=True)
    body = _body(args.registry)
    server = Server(args.server, args.registry, args.logs / f"extras-{args.server}.log")
    results: dict[str, Any] = {"server": args.server}
    try:
        idle: dict[str, Any] = {}
        threads = [
            threading.Thread(target=lambda: idle.__setitem__("fresh", idle_lifetime(server.port, None, args.idle_cap))),
            threading.Thread(target=lambda: idle.__setitem__("after_request", idle_lifetime(server.port, body, args.idle_cap))),
        ]  # fmt: skip
        for thread in threads:
            thread.start()
        results["pipelining"] = pipelining(server.port, body)
        results["expect_100_continue"] = expect_continue(server.port, body)
        results["h2c_upgrade_post"] = h2c_upgrade(server.port, body)
        results["bad_chunk_after_good"] = bad_chunk_after_good(server.port)
        for thread in threads:
            thread.join()
        results["idle_connection"] = idle
    finally:
        server.stop()
    print(json.dumps(results, indent=1))
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
