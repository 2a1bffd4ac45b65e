"""Fixtures for the serving tests: the demo models in a registry, and a running server."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from keel_server import ADMIN_TOKEN, DEMO_REFS, DRIFT_WINDOW, ServerProcess, start_server

from keel.examples import breast_cancer


@pytest.fixture(scope="module")
def server(
    demo_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """One server for a test module, with small limits so the tests can reach them."""
    log = tmp_path_factory.mktemp("server") / "server.log"
    running = start_server(
        demo_registry, DEMO_REFS, log,
        KEEL_ADMIN_TOKEN=ADMIN_TOKEN, KEEL_SERVER__MAX_BODY_BYTES="65536",
        KEEL_SERVER__WATCH_INTERVAL_S="0",
    )  # fmt: skip
    running.wait_ready()
    yield running
    # keel serve drains on SIGTERM, then exits: with 0, or by the signal itself.
    assert running.stop() in (0, -signal.SIGTERM), log.read_text()


@pytest.fixture
def registry_copy(demo_registry: Path, tmp_path: Path) -> Path:
    """A private copy of the demo registry that a test may change."""
    copy = tmp_path / "registry"
    shutil.copytree(demo_registry, copy)
    return copy


@pytest.fixture(scope="module")
def monitored_server(
    demo_registry: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServerProcess]:
    """``keel serve breast-cancer@production`` with drift windows small enough for a test."""
    log = tmp_path_factory.mktemp("monitored") / "server.log"
    drift = {f"KEEL_DRIFT__{key}": str(value) for key, value in DRIFT_WINDOW.items()}
    running = start_server(
        demo_registry, ("breast-cancer@production",), log,
        KEEL_SERVER__WATCH_INTERVAL_S="0", **drift,
    )  # fmt: skip
    running.wait_ready()
    yield running
    assert running.stop() in (0, -signal.SIGTERM), log.read_text()


@pytest.fixture(scope="module")
def held_out() -> list[dict[str, Any]]:
    """The breast-cancer held-out split's records: real rows the model never saw in training."""
    frame, target, _ = breast_cancer.load_frame()
    _, valid_frame, _, _ = breast_cancer.split(frame, target)
    records: list[dict[str, Any]] = valid_frame.to_dict("records")
    return records


@pytest.fixture
def stop_later() -> Iterator[Callable[[ServerProcess], None]]:
    """Register a server a test starts itself; it is stopped when the test ends."""
    servers: list[ServerProcess] = []
    yield servers.append
    for server in servers:
        server.stop()
