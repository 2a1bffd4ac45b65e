"""A real Prometheus server on loopback, started and stopped by the tests.

The tests that prove keel's alert rules and dashboard work against Prometheus itself,
not a mock. Prometheus and promtool come from Debian's ``prometheus`` package, which
``scripts/install-system-deps`` installs; without them these tests fail, never skip.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

INSTALL_HINT = "run scripts/install-system-deps (it installs Debian's prometheus package)"


def prometheus_tool(name: str) -> str:
    """The path of ``prometheus`` or ``promtool``; fails the test loudly if it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed: {INSTALL_HINT}", pytrace=False)
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class PrometheusError(AssertionError):
    """Prometheus answered an API call with an error, or did not do what was awaited."""


class PrometheusServer:
    """A ``prometheus`` process that scrapes ``targets`` every second and evaluates ``rule_files``.

    Use as a context manager: entering starts the process and waits for ``/-/ready``;
    leaving stops it and removes its data. Scrape and rule evaluation both run every
    second, so a rule without ``for:`` fires within a few seconds of the scrape.
    """

    def __init__(
        self,
        targets: Sequence[str],
        rule_files: Sequence[Path] = (),
        *,
        job: str = "keel",
        startup_timeout: float = 30,
        features: Sequence[str] = (),
    ) -> None:
        self.targets = list(targets)
        # --enable-feature values (exemplar-storage, to keep the exemplars scrapes carry).
        self.features = list(features)
        self.rule_files = [path.resolve() for path in rule_files]
        self.job = job
        self.startup_timeout = startup_timeout
        self.port = 0
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log(self) -> str:
        """What Prometheus has logged so far."""
        if self._workdir is None:
            return ""
        return (Path(self._workdir.name) / "prometheus.log").read_text(errors="replace")

    def __enter__(self) -> PrometheusServer:
        binary = prometheus_tool("prometheus")
        self._workdir = tempfile.TemporaryDirectory(prefix="keel-prometheus-")
        workdir = Path(self._workdir.name)
        config = workdir / "prometheus.yml"
        # JSON is YAML, so the config is written with the json module.
        config.write_text(json.dumps(self._config(), indent=2))
        self.port = free_port()
        with (workdir / "prometheus.log").open("wb") as log:
            self._process = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={workdir / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                    *(f"--enable-feature={feature}" for feature in self.features),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._client = httpx.Client(base_url=self.url, timeout=10)
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _config(self) -> dict[str, Any]:
        return {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(path) for path in self.rule_files],
            "scrape_configs": [
                {"job_name": self.job, "static_configs": [{"targets": self.targets}]}
            ],
        }

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._process is None or self._process.poll() is not None:
                raise PrometheusError(f"prometheus exited while starting:\n{self.log}")
            try:
                if self._http().get("/-/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            time.sleep(0.05)
        raise PrometheusError(f"prometheus not ready in {self.startup_timeout} s:\n{self.log}")

    def stop(self, timeout: float = 10) -> None:
        """Stop Prometheus (terminate, then kill) and remove its data directory."""
        if self._client is not None:
            self._client.close()
            self._client = None
        if self._process is not None:
            if self._process.poll() is None:
                self._process.terminate()
                try:
                    self._process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait(timeout)
            self._process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    def _http(self) -> httpx.Client:
        if self._client is None:
            raise PrometheusError("the Prometheus server is not running; use it as `with`")
        return self._client

    def api(self, endpoint: str, **params: str) -> Any:
        """The ``data`` of a ``/api/v1/<endpoint>`` answer; raises on an error answer."""
        response = self._http().get(f"/api/v1/{endpoint}", params=params)
        body = response.json()
        if body.get("status") != "success":
            raise PrometheusError(
                f"/api/v1/{endpoint} {params}: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        """The instant vector ``promql`` evaluates to now: ``[{"metric": ..., "value": ...}]``."""
        data = self.api("query", query=promql)
        result: list[dict[str, Any]] = data["result"]
        return result

    def alerts(self) -> list[dict[str, Any]]:
        """The active alerts, pending and firing, as ``/api/v1/alerts`` lists them."""
        alerts: list[dict[str, Any]] = self.api("alerts")["alerts"]
        return alerts

    def targets_up(self) -> bool:
        """Whether every scrape target has been scraped and answered."""
        active = self.api("targets", state="active")["activeTargets"]
        return len(active) == len(self.targets) and all(t["health"] == "up" for t in active)

    def wait_for_targets_up(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while not self.targets_up():
            if time.monotonic() > deadline:
                targets = self.api("targets", state="active")["activeTargets"]
                raise PrometheusError(f"targets not up in {timeout} s: {targets}")
            time.sleep(0.1)

    def wait_for_alert(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        state: str = "firing",
        timeout: float = 30,
    ) -> dict[str, Any]:
        """The first alert ``name`` in ``state`` whose labels include ``labels``; waits for it."""
        wanted = {"alertname": name, **(labels or {})}
        deadline = time.monotonic() + timeout
        while True:
            alerts = self.alerts()
            for alert in alerts:
                if alert["state"] == state and wanted.items() <= alert["labels"].items():
                    return alert
            if time.monotonic() > deadline:
                raise PrometheusError(
                    f"no {state} alert {wanted} in {timeout} s; active alerts:\n"
                    + json.dumps(alerts, indent=2)
                )
            time.sleep(0.1)
