"""A real ``keel serve`` process on loopback, started and stopped by the tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

ADMIN_TOKEN = "test-admin-token"  # noqa: S105 - a token for a loopback test server
DEMO_REFS = ("breast-cancer@production", "breast-cancer@candidate", "digits-mlp@production")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class ServerProcess:
    """A running ``keel serve`` and how to reach it."""

    process: subprocess.Popen[str]
    url: str
    log: Path
    # host:port of its gRPC service, as gRPC clients take it.
    grpc_address: str = ""

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, self.log.read_text()
                try:
                    if client.get("/v2/health/ready").status_code == 200:
                        return
                except httpx.TransportError:
                    pass
                time.sleep(0.05)
        raise AssertionError(f"server not ready in {timeout} s:\n{self.log.read_text()}")

    def wait_live(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        with self.client() as client:
            while time.monotonic() < deadline:
                assert self.process.poll() is None, self.log.read_text()
                try:
                    if client.get("/v2/health/live").status_code == 200:
                        return
                except httpx.TransportError:
                    time.sleep(0.05)
        raise AssertionError(f"server not live in {timeout} s:\n{self.log.read_text()}")

    def stop(self, timeout: float = 30) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            raise


def start_server(
    registry: Path,
    refs: tuple[str, ...],
    log: Path,
    args: tuple[str, ...] = (),
    preexec_fn: Callable[[], None] | None = None,
    **env: str,
) -> ServerProcess:
    """Start ``keel serve`` in a subprocess; ``args`` and environment variables configure it.

    ``preexec_fn`` runs in the child before keel starts (to set its resource limits).
    """
    port, grpc_port = free_port(), free_port()
    while grpc_port == port:
        grpc_port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "keel", "serve", *refs, "--registry", str(registry),
         "--port", str(port), "--grpc-port", str(grpc_port), *args],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **env}, preexec_fn=preexec_fn,
    )  # fmt: skip
    return ServerProcess(process, f"http://127.0.0.1:{port}", log, f"127.0.0.1:{grpc_port}")


# Drift windows small enough for a test to fill, replace and judge in seconds.
DRIFT_WINDOW = {"WINDOW_ROWS": 1000, "BLOCK_ROWS": 250, "MIN_ROWS": 500, "COLLAPSE_ROWS": 200}


def send_records(
    server: ServerProcess,
    records: list[dict[str, Any]],
    model: str = "breast-cancer",
    per_request: int = 20,
) -> None:
    """Send ``records`` in order to the records API, a few per request; each must be served."""
    path = f"/v1/models/{model}/predict"
    with server.client() as client:
        for start in range(0, len(records), per_request):
            response = client.post(path, json={"instances": records[start : start + per_request]})
            assert response.status_code == 200, response.text


def metric_sum(server: ServerProcess, sample_name: str, **labels: str) -> float:
    """The sum of the samples of ``sample_name`` on /metrics that carry ``labels``."""
    text = httpx.get(f"{server.url}/metrics").text
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == sample_name and labels.items() <= sample.labels.items()
    )
