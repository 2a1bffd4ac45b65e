"""The prediction log's disk fills up under a shadowed ``keel serve``, then has room again.

The full disk is real, not a setting: the SQLite log lies on a small tmpfs this test
mounts (it runs as root on Linux), and a filler file takes every block that is left,
so SQLite's own writes fail with ENOSPC (``database or disk is full``). Removing the
filler gives the space back. A machine where the tmpfs cannot be mounted fails the
test: it never skips.
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from keel_server import ServerProcess
from test_shadow_faults import metric
from test_shadow_mirror import PREDICT, read_log, shadow_state, start_shadowed, wait_for

# Room for the log's first records (the file, its WAL and its 32 KiB index) and little more.
DISK_BYTES = 1 << 20
BATCHES = 20


def system_tool(name: str) -> str:
    found = shutil.which(name)
    assert found, f"this test needs {name} (util-linux) on the PATH"
    return found


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs of the test's own, unmounted when the test ends."""
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(
        [system_tool("mount"), "-t", "tmpfs", "-o", f"size={DISK_BYTES}", "tmpfs", str(disk)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert mounted.returncode == 0, f"this test mounts a tmpfs (root on Linux): {mounted.stderr}"
    try:
        yield disk
    finally:
        subprocess.run([system_tool("umount"), str(disk)], check=True)


def fill(disk: Path) -> Path:
    """A file that takes every free block of ``disk``: written until the kernel says ENOSPC."""
    filler = disk / "filler"
    chunk = bytes(64 * 1024)
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
    try:
        while True:
            try:
                os.write(descriptor, chunk)
            except OSError as error:
                if error.errno == errno.ENOSPC:
                    break
                raise
    finally:
        os.close(descriptor)
    assert shutil.disk_usage(disk).free == 0
    return filler


@pytest.fixture(scope="module")
def reference_answers(server: ServerProcess, held_out: list[dict[str, Any]]) -> list[bytes]:
    """What a server with no shadow answers to each batch, byte for byte."""
    with server.client() as client:
        answers = [client.post(PREDICT, json={"instances": batch}) for batch in batches(held_out)]
    assert all(a.status_code == 200 for a in answers)
    return [a.content for a in answers]


def batches(held_out: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    return [held_out[i : i + 3] for i in range(BATCHES)]


def log_state(server: ServerProcess) -> dict[str, Any]:
    state: dict[str, Any] = shadow_state(server)["log"]
    return state


def test_a_full_log_disk_costs_log_records_only_and_the_log_recovers_when_space_returns(
    small_disk: Path,
    demo_registry: Path,
    held_out: list[dict[str, Any]],
    reference_answers: list[bytes],
    tmp_path: Path,
    stop_later: Callable[[ServerProcess], None],
) -> None:
    log_url = f"sqlite:///{small_disk / 'predictions.sqlite'}"
    server = start_shadowed(
        demo_registry, log_url, tmp_path / "server.log", stop_later,
        KEEL_SHADOW__LOG__FLUSH_INTERVAL_S="0.1",
    )  # fmt: skip
    inputs = batches(held_out)
    sent = 0

    def send(count: int) -> None:
        """``count`` requests, each answered exactly as a server with no shadow answers it."""
        nonlocal sent
        with server.client() as client:
            for _ in range(count):
                i = sent % BATCHES
                answer = client.post(PREDICT, json={"instances": inputs[i]})
                assert answer.status_code == 200, answer.text
                assert answer.content == reference_answers[i]
                sent += 1

    def settled() -> bool:
        """Every request sent has its record written or dropped, none still buffered."""
        state = log_state(server)
        accounted: int = state["written"] + sum(state["dropped"].values())
        return state["pending"] == 0 and accounted == sent

    send(10)
    wait_for(lambda: log_state(server)["written"] == 10, "10 records written")

    filler = fill(small_disk)
    # A full disk under the log: every request is still answered, each record dropped
    # (no block is left, and each transaction appends a new page's frame to the WAL).
    send(30)
    wait_for(settled, "the records sent to a full disk to be settled")
    state = log_state(server)
    assert state["healthy"] is False
    assert state["written"] == 10
    assert state["dropped"] == {"queue_full": 0, "store_error": 30, "closed": 0}
    assert metric(server, "keel_prediction_log_up") == 0.0
    assert metric(server, "keel_prediction_log_dropped_total", '{reason="store_error"}') == 30

    # Space again: the same server, unrestarted, writes every later record.
    filler.unlink()
    send(20)
    wait_for(settled, "the records sent after space returned to be settled")
    state = log_state(server)
    assert state["healthy"] is True
    assert state["written"] == 30
    assert state["dropped"]["store_error"] == 30
    assert metric(server, "keel_prediction_log_up") == 1.0
    assert metric(server, "keel_prediction_log_written_total") == 30
    assert shadow_state(server)["requests"] == {"ok": sent}

    assert server.stop() in (0, -signal.SIGTERM)
    assert len(read_log(log_url)) == 30
    server_log = (tmp_path / "server.log").read_text()
    assert "database or disk is full" in server_log
    assert "is back; 30 records were dropped while it was down" in server_log
