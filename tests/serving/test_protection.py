"""Batching and load shedding on a real server with the compute-bound wide MLP."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from keel_server import ServerProcess, start_server

from keel.registry import Registry

MODEL = "digits-wide-mlp"


@pytest.fixture(scope="module")
def wide_registry(demo_registry: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The demo registry plus the wide MLP (a millisecond or more per single-row call)."""
    registry = tmp_path_factory.mktemp("wide") / "registry"
    shutil.copytree(demo_registry, registry)
    done = subprocess.run(
        [sys.executable, "-m", "keel.examples.digits_wide_mlp", "--registry", str(registry)],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return registry


def _record(registry: Path) -> dict[str, Any]:
    return dict(Registry(registry).resolve(f"{MODEL}@production").golden.inputs[0])


async def _concurrently(url: str, body: dict[str, Any], count: int) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        calls = [client.post(f"/v1/models/{MODEL}/predict", json=body) for _ in range(count)]
        return await asyncio.gather(*calls)


def _stats(server: ServerProcess) -> dict[str, int]:
    with server.client() as client:
        stats: dict[str, int] = client.get(f"/v2/models/{MODEL}").json()["keel"]["batching"]
        return stats


def test_concurrent_single_rows_are_merged_into_batches(
    wide_registry: Path, tmp_path: Path
) -> None:
    server = start_server(wide_registry, (f"{MODEL}@production",), tmp_path / "log")
    try:
        server.wait_ready()
        record = _record(wide_registry)
        before = _stats(server)
        responses = asyncio.run(_concurrently(server.url, {"instances": [record]}, 64))
        after = _stats(server)
    finally:
        server.stop()
    assert {r.status_code for r in responses} == {200}
    expected = Registry(wide_registry).resolve(f"{MODEL}@production").golden.outputs["label"][0]
    assert {r.json()["predictions"][0]["label_index"] for r in responses} == {expected}
    rows = after["rows_run"] - before["rows_run"]
    batches = after["batches_run"] - before["batches_run"]
    assert rows == 64
    assert batches < rows, f"{batches} runtime calls for {rows} rows: nothing was merged"


def test_a_full_queue_sheds_with_503_and_retry_after_then_recovers(
    wide_registry: Path, tmp_path: Path
) -> None:
    server = start_server(
        wide_registry, (f"{MODEL}@production",), tmp_path / "log",
        KEEL_BATCHING__MAX_BATCH_SIZE="1", KEEL_BATCHING__MAX_QUEUE_SIZE="4",
        KEEL_BATCHING__MAX_BATCHES_IN_FLIGHT="1",
    )  # fmt: skip
    try:
        server.wait_ready()
        body = {"instances": [_record(wide_registry)]}
        responses = asyncio.run(_concurrently(server.url, body, 64))
        statuses = [r.status_code for r in responses]
        shed = [r for r in responses if r.status_code == 503]
        assert set(statuses) == {200, 503}
        assert all(int(r.headers["retry-after"]) >= 1 for r in shed)
        assert "queue" in shed[0].json()["error"]
        assert _stats(server)["requests_shed"] == len(shed)
        with server.client() as client:
            assert client.post(f"/v1/models/{MODEL}/predict", json=body).status_code == 200
    finally:
        server.stop()
