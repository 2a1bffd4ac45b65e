"""``keel demo`` with no flags ends up serving the example models."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from keel_server import ServerProcess, free_port


def test_demo_serves_the_example_models(demo_registry: Path, tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "demo.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "keel", "demo", "--registry", str(demo_registry)],
        stdout=log.open("w"), stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
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
            # The demo mirrors breast-cancer's traffic to its candidate in shadow.
            deadline = time.monotonic() + 60
            while True:
                shadow = client.get("/v2/models/breast-cancer/shadow")
                if shadow.status_code == 200 and shadow.json()["candidate"]["ready"]:
                    break
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
    finally:
        server.stop()
    text = log.read_text()
    assert "already published" in text
    assert "keel shadow report breast-cancer" in text
    # The log is where the demo was started, as the README says.
    assert (tmp_path / "keel-predictions.sqlite").is_file()
