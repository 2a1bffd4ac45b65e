"""Server processes under test: started pinned to a core, polled until ready, stopped by SIGTERM."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

BENCH = Path(__file__).resolve().parent
TASKSET = shutil.which("taskset") or "/usr/bin/taskset"
SERVER_CORE = 0
LOAD_CORE = 1
# Polling faster than this would measure the poller; slower would blur start-up times.
POLL_S = 0.005


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A server started by the benchmarks, and how long it took to answer and to be ready."""

    label: str
    process: subprocess.Popen[bytes]
    port: int
    ready_path: str
    log: Path
    started: float
    live_s: float | None = None
    ready_s: float | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Seconds from process start until the ready path answered 200; raises if it never does."""
        deadline = self.started + timeout_s
        while time.perf_counter() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited early:\n{self._log_tail()}")
            status = _get_status(self.port, self.ready_path)
            now = time.perf_counter()
            if status is not None and self.live_s is None:
                self.live_s = now - self.started
            if status == 200:
                self.ready_s = now - self.started
                return self.ready_s
            time.sleep(POLL_S)
        self.stop()
        raise RuntimeError(f"{self.label} not ready in {timeout_s} s:\n{self._log_tail()}")

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM, then wait; SIGKILL only if it outlives ``timeout_s``."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)
            return None

    def _log_tail(self) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        except OSError:
            return "(no log)"


def _get_status(port: int, path: str) -> int | None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=1.0)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        connection.close()


def _start(
    label: str, argv: list[str], ready_path: str, log: Path, env: dict[str, str]
) -> ServerProcess:
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    process = subprocess.Popen(
        [TASKSET, "-c", str(SERVER_CORE), *argv],
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        env={**os.environ, **env},
    )
    port = int(argv[argv.index("--port") + 1])
    return ServerProcess(label, process, port, ready_path, log, started)


def start_keel(
    registry: Path, refs: list[str], log: Path, env: dict[str, str] | None = None
) -> ServerProcess:
    """``keel serve REFS`` pinned to the server core; ``env`` is added to its environment."""
    port = free_port()
    argv = [sys.executable, "-m", "keel", "serve", *refs, "--registry", str(registry),
            "--port", str(port)]  # fmt: skip
    return _start("keel", argv, "/v2/health/ready", log, env or {})


def start_naive(
    model: Path, features: list[str], log: Path, sync_handler: bool = False
) -> ServerProcess:
    """The FastAPI baseline for one ONNX model, pinned to the server core."""
    features_file = log.with_suffix(".features.json")
    features_file.parent.mkdir(parents=True, exist_ok=True)
    features_file.write_text(json.dumps(features))
    port = free_port()
    argv = [sys.executable, str(BENCH / "naive_server.py"), "--model", str(model),
            "--features", str(features_file), "--port", str(port)]  # fmt: skip
    if sync_handler:
        argv.append("--sync-handler")
    label = "naive (def handler)" if sync_handler else "naive"
    return _start(label, argv, "/health", log, {})


def start_stack_floor(app: str, log: Path) -> ServerProcess:
    """A fixed answer from uvicorn (bare ASGI, or a Starlette route) or keel's HTTP layer."""
    port = free_port()
    argv = [sys.executable, str(BENCH / "stack_floor.py"), "--app", app, "--port", str(port)]
    # A floor is a fixed reference: always this checkout's HTTP layer, even when the
    # servers under test run another commit's source through PYTHONPATH.
    return _start(f"stack floor ({app})", argv, "/", log, {"PYTHONPATH": str(BENCH.parent / "src")})


def start_fixed_response(log: Path) -> ServerProcess:
    """The fixed-response server that measures the load generator's ceiling."""
    port = free_port()
    argv = [sys.executable, str(BENCH / "fixed_response_server.py"), "--port", str(port)]
    return _start("fixed response", argv, "/", log, {})
