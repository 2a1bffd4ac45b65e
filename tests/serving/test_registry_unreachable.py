"""A registry that cannot be read at start: the server lives, is not ready, retries, then serves."""

from __future__ import annotations

import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from keel_server import ServerProcess, start_server
from test_shadow_mirror import wait_shadow_ready


def test_the_server_becomes_ready_when_the_registry_comes_back(
    demo_registry: Path,
    held_out: list[dict[str, Any]],
    tmp_path: Path,
    stop_later: Callable[[ServerProcess], None],
) -> None:
    registry = tmp_path / "not-mounted-yet"
    server = start_server(
        registry, ("breast-cancer@production", "digits-mlp@production"), tmp_path / "server.log",
        args=("--shadow", "breast-cancer@candidate",
              "--log-store", f"sqlite:///{tmp_path / 'predictions.sqlite'}"),
        KEEL_SERVER__WATCH_INTERVAL_S="0",
    )  # fmt: skip
    stop_later(server)
    server.wait_live()
    with server.client() as client:
        # It keeps answering liveness and refusing readiness while it retries.
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            assert client.get("/v2/health/live").status_code == 200
            assert client.get("/v2/health/ready").status_code == 503
            time.sleep(0.2)
        refused = client.post("/v1/models/breast-cancer/predict", json={"instances": held_out[:1]})
        assert refused.status_code in (404, 503)
    log = (tmp_path / "server.log").read_text()
    assert "cannot serve breast-cancer@production yet" in log
    assert "retrying" in log

    # The registry appears (a volume mounted late, an object store back up).
    shutil.copytree(demo_registry, registry)
    server.wait_ready(timeout=90)
    with server.client() as client:
        answer = client.post("/v1/models/breast-cancer/predict", json={"instances": held_out[:2]})
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["predictions"]) == 2
        assert client.get("/v2/models/digits-mlp/ready").status_code == 200
    # The shadow candidate of a primary that loaded late starts too.
    wait_shadow_ready(server)
    assert "every model named at start is now served" in (tmp_path / "server.log").read_text()
    assert server.stop() in (0, -signal.SIGTERM)
