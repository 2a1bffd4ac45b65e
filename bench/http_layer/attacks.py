"""issue 23's hostile clients against keel's own HTTP layer and against granian (RSGI).

    PYTHONPATH=/tmp/keel-head/src .venv/bin/python bench/http_layer/attacks.py \\
        --registry /tmp/demo-registry --server keel --out /tmp/attacks-keel.json

Loopback only; every loop is bounded (bytes, seconds). The server runs on core 0
under ``ulimit -n 1024``, this client on core 1. RSS is the server's (granian's
worker's), sampled every 50 ms; a probe thread times ``GET /v2/health/live`` on
its own connection every 0.25 s while attacks (a) and (b) run.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GRANIAN = os.environ.get("GRANIAN", "/tmp/granian-venv/bin/granian")
PREDICT = "/v1/models/breast-cancer/predict"
INFER = "/v2/models/breast-cancer/infer"
MiB = 1024 * 1024


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _limit_files() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


class Server:
    def __init__(self, kind: str, registry: Path, log: Path) -> None:
        self.kind = kind
        self.port = free_port()
        env = {**os.environ}
        if kind == "keel":
            argv = [sys.executable, "-m", "keel", "serve", "breast-cancer@production",
                    "--registry", str(registry), "--port", str(self.port)]  # fmt: skip
        else:
            argv = [GRANIAN, "--interface", "rsgi", "--workers", "1", "--runtime-threads", "1",
                    "--loop", "uvloop", "--no-access-log", "--working-dir", str(HERE),
                    "--port", str(self.port), "rsgi_app:app"]  # fmt: skip
            env.update(KEEL_REGISTRY=str(registry), KEEL_SERVER__PORT=str(self.port),
                       HTTP_LAYER_REFS="breast-cancer@production")  # fmt: skip
        self.log = log
        self.process = subprocess.Popen(
            ["taskset", "-c", "0", *argv], stdout=log.open("wb"), stderr=subprocess.STDOUT,
            env=env, preexec_fn=_limit_files,
        )  # fmt: skip
        self.wait_ready()

    def wait_ready(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.kind} exited: {self.log.read_text()[-2000:]}")
            status, _, _ = request(self.port, "GET", "/v2/health/ready", timeout=1)
            if status == 200:
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"{self.kind} not ready")
        children = psutil.Process(self.process.pid).children(recursive=True)
        # taskset execs; granian's main process has one worker child.
        self.pid = children[0].pid if self.kind == "granian" and children else self.process.pid

    def rss(self) -> int:
        try:
            return int(psutil.Process(self.pid).memory_info().rss)
        except psutil.Error:
            return 0

    def alive(self) -> bool:
        return psutil.pid_exists(self.pid) and self.process.poll() is None

    def nofile(self) -> str:
        for line in Path(f"/proc/{self.pid}/limits").read_text().splitlines():
            if line.startswith("Max open files"):
                return " ".join(line.split()[3:5])
        return "?"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)


def request(
    port: int, method: str, path: str, body: bytes = b"", timeout: float = 5.0,
    headers: str = "",
) -> tuple[int | None, dict[str, str], bytes]:  # fmt: skip
    """One request on a fresh connection: status, headers, and every byte after the head."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
            head = f"{method} {path} HTTP/1.1\r\nHost: x\r\n{headers}"
            if body or method == "POST":
                head += f"Content-Length: {len(body)}\r\nContent-Type: application/json\r\n"
            sock.sendall(head.encode() + b"\r\n" + body)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = sock.recv(65536)
                if not chunk:
                    return None, {}, data
                data += chunk
            head_bytes, _, rest = data.partition(b"\r\n\r\n")
            lines = head_bytes.decode("latin-1").split("\r\n")
            fields = {
                k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])
            }
            length = int(fields.get("content-length", "0"))
            if method == "HEAD":
                length = 0
            while len(rest) < length:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                rest += chunk
            return int(lines[0].split()[1]), fields, rest
    except OSError:
        return None, {}, b""


class Watch:
    """RSS samples of the server, and health-probe latency, while an attack runs."""

    def __init__(self, server: Server, probe: bool = True) -> None:
        self.server = server
        self.probe = probe
        self.stop = threading.Event()
        self.peak = server.rss()
        self.before = self.peak
        self.cpu_before = self._cpu()
        self.probe_max_s = 0.0
        self.probe_failed = 0
        self.threads = [threading.Thread(target=self._rss, daemon=True)]
        if probe:
            self.threads.append(threading.Thread(target=self._probe, daemon=True))

    def _cpu(self) -> float:
        try:
            times = psutil.Process(self.server.pid).cpu_times()
            return float(times.user + times.system)
        except psutil.Error:
            return 0.0

    def _rss(self) -> None:
        while not self.stop.wait(0.05):
            self.peak = max(self.peak, self.server.rss())

    def _probe(self) -> None:
        while not self.stop.wait(0.25):
            started = time.monotonic()
            status, _, _ = request(self.server.port, "GET", "/v2/health/live", timeout=30)
            took = time.monotonic() - started
            self.probe_max_s = max(self.probe_max_s, took)
            if status != 200:
                self.probe_failed += 1

    def __enter__(self) -> Watch:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        time.sleep(1.0)
        self.stop.set()
        for thread in self.threads:
            thread.join(35)
        self.after = self.server.rss()
        self.cpu = self._cpu() - self.cpu_before

    def report(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "rss_before_mib": round(self.before / MiB, 1),
            "rss_peak_mib": round(self.peak / MiB, 1),
            "rss_growth_mib": round((self.peak - self.before) / MiB, 1),
            "rss_after_mib": round(self.after / MiB, 1),
            "server_cpu_s": round(self.cpu, 2),
        }
        if self.probe:
            out["health_probe_max_ms"] = round(self.probe_max_s * 1000, 1)
            out["health_probe_failed"] = self.probe_failed
        return out


def _status_of(data: bytes) -> int | None:
    if data.startswith(b"HTTP/1."):
        try:
            return int(data.split(b" ", 2)[1])
        except (IndexError, ValueError):
            return None
    return None


def endless_header(server: Server, limit: int = 64 * MiB) -> dict[str, Any]:
    """(a) GET with a header value that never ends, 64 KiB at a time, up to ``limit``."""
    chunk = b"a" * 65536
    sent = 0
    answer = b""
    outcome = "never cut off"
    started = time.monotonic()
    with Watch(server) as watch, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
        sock.settimeout(30)
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-A: ")
        sent = 0
        try:
            while sent < limit:
                sock.sendall(chunk)
                sent += len(chunk)
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    answer = sock.recv(4096)
                    outcome = "answered" if answer else "closed"
                    break
        except (BrokenPipeError, ConnectionResetError) as exc:
            outcome = f"reset ({type(exc).__name__})"
        except TimeoutError:
            outcome = "send blocked 30 s"
        if outcome.startswith(("reset", "answered", "closed")) and not answer:
            try:
                sock.settimeout(1)
                answer = sock.recv(4096)
            except OSError:
                pass
    return {
        "outcome": outcome,
        "bytes_sent_when_cut": sent,
        "status": _status_of(answer),
        "answer_head": answer[:120].decode("latin-1"),
        "seconds": round(time.monotonic() - started, 2),
        **watch.report(),
    }


def one_byte_chunks(server: Server, body_bytes: int = 4_000_000) -> dict[str, Any]:
    """(b) a chunked POST body of ``body_bytes`` one-byte chunks."""
    batch = b"1\r\na\r\n" * 10_000
    started = time.monotonic()
    answer = b""
    sent = 0
    outcome = "sent"
    with Watch(server) as watch, socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(60)
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\n".encode()
        )
        try:
            while sent < body_bytes:
                sock.sendall(batch)
                sent += 10_000
            sock.sendall(b"0\r\n\r\n")
            answer = sock.recv(4096)
        except OSError as exc:
            outcome = f"{type(exc).__name__} after {sent} body bytes"
            try:
                answer = sock.recv(4096)
            except OSError:
                pass
    return {
        "outcome": outcome,
        "body_bytes_sent": sent,
        "status": _status_of(answer),
        "seconds": round(time.monotonic() - started, 2),
        **watch.report(),
    }


def slowloris(server: Server, cap_s: float = 70.0) -> dict[str, Any]:
    """(c) headers trickled one byte a second; when does the server close?"""
    started = time.monotonic()
    sent = 0
    outcome = f"still open after {cap_s:.0f} s"
    answer = b""
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.settimeout(1)
        text = b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
        for byte in text:
            if time.monotonic() - started > cap_s:
                break
            try:
                sock.sendall(bytes([byte]))
                sent += 1
            except OSError as exc:
                outcome = f"closed ({type(exc).__name__})"
                break
            readable, _, _ = select.select([sock], [], [], 1.0)
            if readable:
                try:
                    answer = sock.recv(4096)
                except OSError:
                    answer = b""
                outcome = "answered" if answer else "closed"
                break
    return {
        "outcome": outcome,
        "seconds_until": round(time.monotonic() - started, 1),
        "bytes_trickled": sent,
        "status": _status_of(answer),
    }


def bad_chunk_size(server: Server, cap_s: float = 40.0) -> dict[str, Any]:
    """(d) a chunked body whose first chunk size is not hex: time to an answer."""
    started = time.monotonic()
    answer = b""
    outcome = f"no answer in {cap_s:.0f} s"
    with socket.create_connection(("127.0.0.1", server.port)) as sock:
        sock.sendall(
            f"POST {PREDICT} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Transfer-Encoding: chunked\r\n\r\nzz\r\n".encode()
        )
        sock.settimeout(cap_s)
        try:
            answer = sock.recv(4096)
            outcome = "answered" if answer else "closed without an answer"
        except TimeoutError:
            pass
        except OSError as exc:
            outcome = f"reset ({type(exc).__name__})"
    return {
        "outcome": outcome,
        "seconds": round(time.monotonic() - started, 3),
        "status": _status_of(answer),
        "answer_head": answer[:200].decode("latin-1"),
    }


def head_on_post(server: Server) -> dict[str, Any]:
    """(e) HEAD on the POST-only inference routes: any bytes after the head?"""
    out: dict[str, Any] = {}
    for path in (PREDICT, INFER):
        with socket.create_connection(("127.0.0.1", server.port)) as sock:
            sock.sendall(f"HEAD {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            sock.settimeout(2)
            data = b""
            try:
                while b"\r\n\r\n" not in data:
                    chunk = sock.recv(4096)
                    if not chunk:
                        break
                    data += chunk
                head, _, extra = data.partition(b"\r\n\r\n")
                sock.settimeout(1.0)
                try:
                    while True:
                        chunk = sock.recv(4096)
                        if not chunk:
                            break
                        extra += chunk
                except TimeoutError:
                    pass
            except OSError:
                head, extra = data, b""
        lines = head.decode("latin-1").split("\r\n")
        out[path] = {
            "status": _status_of(data),
            "content_length": next(
                (
                    l.split(":", 1)[1].strip()
                    for l in lines
                    if l.lower().startswith("content-length")
                ),
                None,
            ),
            "body_bytes_after_head": len(extra),
        }
    return out


def idle_connections(server: Server, count: int = 2000, hold_s: float = 5.0) -> dict[str, Any]:
    """(f) ``count`` idle connections against a server under ulimit -n 1024; then a request."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, count + 200)), hard))
    socks: list[socket.socket] = []
    failed = 0
    for _ in range(count):
        sock = socket.socket()
        sock.setblocking(False)
        try:
            sock.connect(("127.0.0.1", server.port))
        except BlockingIOError:
            pass
        except OSError:
            failed += 1
            sock.close()
            continue
        socks.append(sock)
    time.sleep(hold_s)
    held_fds = len(os.listdir(f"/proc/{server.pid}/fd")) if server.alive() else None
    t0 = time.monotonic()
    status, _, _ = request(server.port, "GET", "/v2/health/live", timeout=10)
    live_s = time.monotonic() - t0
    body = json.dumps({"instances": [{"x": 1}]}).encode()
    t0 = time.monotonic()
    predict_status, _, _ = request(server.port, "POST", PREDICT, body, timeout=10)
    predict_s = time.monotonic() - t0
    # Still held after the server's idle timeouts?
    for sock in socks:
        sock.close()
    time.sleep(2)
    after_status, _, _ = request(server.port, "GET", "/v2/health/live", timeout=10)
    log_tail = server.log.read_text(errors="replace")
    return {
        "connections_opened": len(socks),
        "connect_failed": failed,
        "server_fds_while_held": held_fds,
        "server_nofile_limit": server.nofile() if server.alive() else None,
        "live_status_while_held": status,
        "live_seconds": round(live_s, 2),
        "predict_status_while_held": predict_status,
        "predict_seconds": round(predict_s, 2),
        "live_status_after_release": after_status,
        "server_alive": server.alive(),
        "emfile_in_log": "Too many open files" in log_tail,
    }


ATTACKS = {
    "a_endless_header": endless_header,
    "b_one_byte_chunks": one_byte_chunks,
    "c_slowloris": slowloris,
    "d_bad_chunk_size": bad_chunk_size,
    "e_head_on_post": head_on_post,
    "f_idle_connections": idle_connections,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--server", choices=["keel", "granian"], required=True)
    parser.add_argument("--only", nargs="*", choices=list(ATTACKS))
    parser.add_argument("--chunk-body-bytes", type=int, default=4_000_000, help="attack (b)")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--logs", type=Path, default=Path("/tmp/keel-http-layer-logs"))
    args = parser.parse_args()
    os.sched_setaffinity(0, {1})
    args.logs.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"server": args.server}
    for name in args.only or list(ATTACKS):
        # A fresh server per attack: one attack's leftovers cannot blur the next.
        server = Server(args.server, args.registry, args.logs / f"attack-{args.server}-{name}.log")
        try:
            if name == "b_one_byte_chunks":
                results[name] = one_byte_chunks(server, args.chunk_body_bytes)
            else:
                results[name] = ATTACKS[name](server)
            results[name]["server_alive_after"] = server.alive()
        finally:
            server.stop()
        print(name, json.dumps(results[name]), flush=True)
    args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
