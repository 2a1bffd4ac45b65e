"""``keel demo`` with no flags ends up serving the example models."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from keel_server import ServerProcess, free_port


def test_demo_serves_the_example_models(demo_registry: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "keel", "demo", "--registry", str(demo_registry)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True,
        env={**os.environ, "KEEL_SERVER__PORT": str(port)},
    )  # fmt: skip
    server = ServerProcess(process, f"http://127.0.0.1:{port}", log)
    try:
        server.wait_ready()
        with server.client() as client:
            assert client.get("/v2/models/digits-mlp/ready").status_code == 200
            assert (
                client.get("/v2/models/breast-cancer/versions/candidate/ready").status_code == 200
            )
    finally:
        server.stop()
    assert "already published" in log.read_text()
