"""Hostile and broken clients against a real ``keel serve``: one client must not freeze,
bloat or confuse the server.

Each attack runs while a watcher asks the health probe and another model for an answer
every 50 ms; every attack is held to a bound on the server's memory or time, and the
probe and the other model answer within half a second throughout. The limits these
tests meet are the documented settings (docs/reliability.md, "Hostile clients").
"""

from __future__ import annotations

import json
import resource
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from figures import Figures
from served_models import read_served_models

from serving.keel_server import ServerProcess, start_server

pytestmark = pytest.mark.integration

SECTION = "hostile_clients"
PROBE_BOUND_S = 0.5
RSS_BOUND_KIB = 64 * 1024
HEADER_TIMEOUT_S = 2.0
BODY_TIMEOUT_S = 2.0
BODY_MIN_RATE = 1024
# The server's open-file limit in the connection tests: small, so a test can reach it.
FILE_LIMIT = 256
PREDICT = "/v1/models/breast-cancer/predict"
OTHER = "/v1/models/digits-mlp/predict"


@contextmanager
def _serving(
    registry: Path, log: Path, preexec_fn: Callable[[], None] | None = None, **env: str
) -> Iterator[ServerProcess]:
    """Breast-cancer and digits-mlp until the block ends; its log must hold no crash."""
    process = start_server(
        registry,
        ("breast-cancer@production", "digits-mlp@production"),
        log,
        preexec_fn=preexec_fn,
        **env,
    )
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()
    text = log.read_text()
    assert "Traceback" not in text
    assert "Too many open files" not in text


@pytest.fixture(scope="module")
def server(
    demo_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """With short time limits, so that the slow senders are quick."""
    with _serving(
        demo_registry,
        tmp_path_factory.mktemp("hostile-clients") / "server.log",
        KEEL_SERVER__HEADER_TIMEOUT_S=str(HEADER_TIMEOUT_S),
        KEEL_SERVER__BODY_TIMEOUT_S=str(BODY_TIMEOUT_S),
        KEEL_SERVER__BODY_MIN_BYTES_PER_S=str(BODY_MIN_RATE),
    ) as process:
        yield process


def _address(server: ServerProcess) -> tuple[str, int]:
    host, port = server.url.removeprefix("http://").split(":")
    return host, int(port)


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _record(server: ServerProcess, model: str) -> dict[str, Any]:
    with server.client() as client:
        served = {served.name: served for served in read_served_models(client)}
    return served[model].record()


class Watcher:
    """Asks the probe and another model every 50 ms; keeps the slowest answer of each."""

    def __init__(self, server: ServerProcess, other_body: bytes) -> None:
        self._server = server
        self._body = other_body
        self.slowest = {"probe": 0.0, "other_model": 0.0}
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        # A new connection each time, as kubelet's probes make them; raw sockets, so the
        # time measured is the server's and not a client library's set-up.
        asks = (
            ("probe", b"GET /v2/health/live HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n"),
            ("other_model", _post(OTHER, self._body)),
        )
        while not self._stop.is_set():
            for what, request in asks:
                started = time.monotonic()
                try:
                    with _connect(self._server) as sock:
                        sock.sendall(request)
                        answer = _read_all(sock)
                    if not answer.startswith(b"HTTP/1.1 200 "):
                        self.failures.append(f"{what}: {answer[:200]!r}")
                except OSError as exc:
                    self.failures.append(f"{what}: {exc!r}")
                self.slowest[what] = max(self.slowest[what], time.monotonic() - started)
            self._stop.wait(0.05)

    @contextmanager
    def watching(self) -> Iterator[Watcher]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join(15)
        assert not self.failures, self.failures[:5]
        assert self.slowest["probe"] < PROBE_BOUND_S, self.slowest
        assert self.slowest["other_model"] < PROBE_BOUND_S, self.slowest


def _watcher(server: ServerProcess) -> Watcher:
    record = _record(server, "digits-mlp")
    return Watcher(server, json.dumps({"instances": [record]}).encode())


def _post(path: str, body: bytes) -> bytes:
    head = (
        f"POST {path} HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _connect(server: ServerProcess) -> socket.socket:
    sock = socket.create_connection(_address(server), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def _read_all(sock: socket.socket, timeout: float = 10) -> bytes:
    sock.settimeout(timeout)
    out = b""
    try:
        while chunk := sock.recv(65536):
            out += chunk
    except ConnectionResetError:
        pass
    return out


def _stream_until_answered(sock: socket.socket, piece: bytes, limit: int) -> tuple[int, bytes]:
    """Send ``piece`` again and again until the server answers (or ``limit`` bytes went)."""
    sock.setblocking(False)
    sent = 0
    answer = b""
    while sent < limit:
        try:
            answer += sock.recv(65536)
            if answer:
                break
        except BlockingIOError:
            pass
        try:
            sent += sock.send(piece)
        except BlockingIOError:
            time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            break
    sock.setblocking(True)
    return sent, answer + _read_all(sock)


ENDLESS = {
    "header value": b"GET /v2/health/live HTTP/1.1\r\nHost: k\r\nX-Endless: ",
    "header name": b"GET /v2/health/live HTTP/1.1\r\nHost: k\r\nX-",
    "request target": b"GET /v2/health/live?",
    "trailer": (
        b"POST /v2/health/live HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"1\r\na\r\n0\r\nX-Trailer: "
    ),
}


@pytest.mark.parametrize("part", sorted(ENDLESS))
def test_a_line_that_never_ends_is_refused_at_the_header_limit(
    server: ServerProcess, part: str, figures: Figures
) -> None:
    before = _rss_kib(server.process.pid)
    with _watcher(server).watching() as watcher, _connect(server) as sock:
        sock.sendall(ENDLESS[part])
        sent, answer = _stream_until_answered(sock, b"a" * 65536, 256 * 1024 * 1024)
    growth = _rss_kib(server.process.pid) - before
    assert answer.startswith((b"HTTP/1.1 431 ", b"HTTP/1.1 400 ")), answer[:200]
    assert b"exceed 65536 bytes" in answer
    # The limit plus what was in flight when the refusal went out, not the 256 MiB offered.
    assert sent < 8 * 1024 * 1024
    assert growth < RSS_BOUND_KIB
    figures.add(
        SECTION,
        f"endless {part}",
        sent_kib=sent // 1024,
        rss_growth_kib=max(growth, 0),
        slowest_probe_ms=round(watcher.slowest["probe"] * 1000),
    )


def test_a_body_of_one_byte_chunks_costs_about_its_size(
    server: ServerProcess, figures: Figures
) -> None:
    record = json.dumps({"instances": [_record(server, "breast-cancer")]}).encode()
    padding = 8 * 1024 * 1024
    # Valid JSON after all its whitespace: the body is served, so nothing was lost either.
    body = record + b" " * padding
    chunks = b"".join(b"1\r\n" + body[i : i + 1] + b"\r\n" for i in range(len(body)))
    head = (
        f"POST {PREDICT} HTTP/1.1\r\nHost: k\r\nContent-Type: application/json\r\n"
        "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    ).encode()
    before = _rss_kib(server.process.pid)
    peak = before
    with _watcher(server).watching() as watcher, _connect(server) as sock:
        sock.sendall(head)
        view = memoryview(chunks)
        for start in range(0, len(chunks), 1 << 20):
            sock.sendall(view[start : start + (1 << 20)])
            peak = max(peak, _rss_kib(server.process.pid))
        sock.sendall(b"0\r\n\r\n")
        answer = _read_all(sock, 60)
        peak = max(peak, _rss_kib(server.process.pid))
    assert answer.startswith(b"HTTP/1.1 200 "), answer[:300]
    growth = peak - before
    assert growth < RSS_BOUND_KIB
    figures.add(
        SECTION,
        "8 MiB body in one-byte chunks",
        rss_growth_kib=max(growth, 0),
        slowest_probe_ms=round(watcher.slowest["probe"] * 1000),
        slowest_other_model_ms=round(watcher.slowest["other_model"] * 1000),
    )


@pytest.mark.parametrize(
    "path", [PREDICT, "/v2/models/breast-cancer/infer", "/v2/models/nosuch/infer", "/nowhere"]
)
def test_head_is_answered_without_a_body_on_every_path(
    server: ServerProcess, path: str, figures: Figures
) -> None:
    with _connect(server) as sock:
        sock.sendall(
            f"HEAD {path} HTTP/1.1\r\nHost: k\r\n\r\n"
            "GET /v2/health/live HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n".encode()
        )
        answers = _read_all(sock)
    head, rest = answers.split(b"\r\n\r\n", 1)
    assert head.split(b" ")[1] in (b"404", b"405"), head
    # The next bytes on the connection are the next answer, whatever HEAD's length said.
    assert rest.startswith(b"HTTP/1.1 200 "), rest[:200]
    figures.add(SECTION, "HEAD, then GET on the same connection", paths_without_a_body=1)


def test_a_malformed_chunk_size_is_answered_400_within_a_second(
    server: ServerProcess, figures: Figures
) -> None:
    with _watcher(server).watching(), _connect(server) as sock:
        started = time.monotonic()
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: k\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
            + b"zz\r\n"
        )
        answer = _read_all(sock, 5)
        took = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 400 "), answer[:200]
    assert b"chunk size" in answer
    assert took < 1.0
    figures.add(SECTION, "a malformed chunk size", answered_400_after_ms=round(took * 1000))


def _trickle(sock: socket.socket, data: bytes, every_s: float, limit_s: float) -> float:
    """Send ``data`` a byte at a time; seconds until the server answered or closed."""
    started = time.monotonic()
    sock.settimeout(every_s)
    for byte in data:
        try:
            if sock.recv(65536, socket.MSG_PEEK):
                break
        except TimeoutError:
            pass
        except ConnectionResetError:
            break
        try:
            sock.sendall(bytes([byte]))
        except (BrokenPipeError, ConnectionResetError):
            break
        if time.monotonic() - started > limit_s:
            break
    return time.monotonic() - started


def test_headers_trickled_slower_than_the_header_timeout_are_cut_off(
    server: ServerProcess, figures: Figures
) -> None:
    headers = b"GET /v2/health/live HTTP/1.1\r\nHost: k\r\n" + b"X-Slow: " + b"s" * 200
    with _watcher(server).watching(), _connect(server) as sock:
        took = _trickle(sock, headers, 0.2, 10 * HEADER_TIMEOUT_S)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    # The sweep runs once a second.
    assert HEADER_TIMEOUT_S <= took < HEADER_TIMEOUT_S + 2.0
    figures.add(SECTION, "headers at 5 bytes a second", cut_after_ms=round(took * 1000))


def test_a_body_slower_than_the_minimum_rate_is_cut_off(
    server: ServerProcess, figures: Figures
) -> None:
    head = f"POST {PREDICT} HTTP/1.1\r\nHost: k\r\nContent-Length: 100000\r\n\r\n".encode()
    with _watcher(server).watching(), _connect(server) as sock:
        sock.sendall(head)
        took = _trickle(sock, b" " * 100_000, 0.2, 10 * BODY_TIMEOUT_S)
        answer = _read_all(sock)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    # The grace, plus a few bytes' worth at the minimum rate, plus the sweep's second.
    assert BODY_TIMEOUT_S <= took < BODY_TIMEOUT_S + 2.0
    figures.add(SECTION, "body at 5 bytes a second", cut_after_ms=round(took * 1000))


def test_curl_http2_upgrade_post_is_served_as_http_1_1(
    server: ServerProcess, figures: Figures
) -> None:
    body = json.dumps({"instances": [_record(server, "breast-cancer")]})
    curl = shutil.which("curl")
    assert curl is not None, "curl is installed by scripts/install-system-deps"
    result = subprocess.run(
        [curl, "--silent", "--show-error", "--http2", "--max-time", "10",
         "-H", "content-type: application/json", "--data", body, server.url + PREDICT],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "predictions" in json.loads(result.stdout), result.stdout
    figures.add(SECTION, "curl --http2 (Upgrade: h2c) POST", answered_as_http_1_1=1)


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILE_LIMIT, FILE_LIMIT))


@pytest.fixture(scope="module")
def small_server(
    demo_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """A server under a small open-file limit, whose connection cap derives from it."""
    with _serving(
        demo_registry,
        tmp_path_factory.mktemp("connection-cap") / "server.log",
        preexec_fn=_limit_files,
        KEEL_SERVER__HEADER_TIMEOUT_S="30",
        KEEL_SERVER__WATCH_INTERVAL_S="0.2",
    ) as process:
        yield process


def _cap(server: ServerProcess) -> tuple[int, int]:
    line = next(line for line in server.log.read_text().splitlines() if "keel listening on" in line)
    words = line.split("(at most ")[1].split()
    return int(words[0]), int(words[2])


def test_idle_connections_past_the_open_file_limit_make_room_for_new_requests(
    small_server: ServerProcess, figures: Figures
) -> None:
    cap, probes = _cap(small_server)
    assert cap == FILE_LIMIT - 128 - probes
    body = json.dumps({"instances": [_record(small_server, "breast-cancer")]}).encode()
    idle = [_connect(small_server) for _ in range(4 * FILE_LIMIT)]
    try:
        # Past the cap and the probes' headroom, new connections are told so and closed,
        # instead of the server running out of files.
        assert _read_all(idle[-1], 5).startswith(b"HTTP/1.1 503 ")
        # Silent for a second, the idle ones give way to a client with a request.
        time.sleep(1.5)
        with httpx.Client(base_url=small_server.url, timeout=5) as client:
            assert client.post(PREDICT, content=body).status_code == 200
            assert client.get("/v2/health/ready").status_code == 200
    finally:
        for sock in idle:
            sock.close()
    figures.add(SECTION, "idle connections, 4x the open-file limit", connections=4 * FILE_LIMIT)


def test_at_the_cap_of_busy_connections_probes_answer_and_requests_get_503(
    small_server: ServerProcess, figures: Figures
) -> None:
    cap, probes = _cap(small_server)
    body = json.dumps({"instances": [_record(small_server, "breast-cancer")]}).encode()
    # Busy: each has started a request and is slowly sending it, so none can be evicted.
    busy = [_connect(small_server) for _ in range(cap)]
    try:
        for sock in busy:
            sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: k\r\n")
        time.sleep(0.5)
        started = time.monotonic()
        with httpx.Client(base_url=small_server.url, timeout=5) as client:
            assert client.get("/v2/health/live").status_code == 200
            assert client.get("/v2/health/ready").status_code == 200
            assert client.get("/metrics").status_code == 200
        probe_s = time.monotonic() - started
        with httpx.Client(base_url=small_server.url, timeout=5) as client:
            refused = client.post(
                PREDICT, content=body, headers={"content-type": "application/json"}
            )
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "1"
        assert "too many open connections" in refused.json()["error"]
        # Past the probes' headroom (busy too): told so, and closed.
        extra = []
        try:
            for _ in range(probes):
                extra.append(_connect(small_server))
                extra[-1].sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: k\r\n")
            time.sleep(0.3)
            extra.append(_connect(small_server))
            assert _read_all(extra[-1], 5).startswith(b"HTTP/1.1 503 ")
        finally:
            for sock in extra:
                sock.close()
    finally:
        for sock in busy:
            sock.close()
    time.sleep(0.3)
    with httpx.Client(base_url=small_server.url, timeout=5) as client:
        served = client.post(PREDICT, content=body, headers={"content-type": "application/json"})
        assert served.status_code == 200
    figures.add(SECTION, "busy connections at the cap", probe_ms=round(probe_s * 1000), cap=cap)
