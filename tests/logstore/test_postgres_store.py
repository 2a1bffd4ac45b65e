"""The PostgreSQL log with what only a shared server brings: many writers, and outages."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psycopg
import pytest
from logstore_support import make_record, wait_until

from keel.errors import LogStoreUnavailable
from keel.logstore import PredictionLog
from keel.logstore.postgres_store import PostgresStore
from keel.settings import LogStoreSettings
from postgres_server import PostgresServer
from prometheus_server import free_port

WRITER_PROCESS = Path(__file__).with_name("log_writer_process.py")


def test_two_server_processes_write_one_log_at_once(postgres_url: str) -> None:
    count = 400
    # Both start on an empty database, so both race to create the tables too.
    writers = [
        subprocess.Popen(
            [sys.executable, str(WRITER_PROCESS), postgres_url, name, str(count)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for name in ("replica-a", "replica-b")
    ]
    reports: list[dict[str, Any]] = []
    for writer in writers:
        out, err = writer.communicate(timeout=60)
        assert writer.returncode == 0, err
        reports.append(json.loads(out))

    for report in reports:
        assert report["written"] == count
        assert sum(report["dropped"].values()) == report["failures"] == 0
    with psycopg.connect(postgres_url) as connection:
        total, ids = connection.execute(
            "SELECT count(*), count(DISTINCT id) FROM keel_predictions"
        ).fetchone() or (0, 0)
    assert total == ids == 2 * count
    store = PostgresStore(postgres_url)
    request_ids = {record.request_id for record in store.read("iris")}
    store.close()
    assert request_ids == {
        f"{name}-{i}" for name in ("replica-a", "replica-b") for i in range(count)
    }


def test_stores_opening_together_create_the_tables_once(postgres_url: str) -> None:
    stores = [PostgresStore(postgres_url) for _ in range(4)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def first_use(store: PostgresStore) -> None:
        start.wait(timeout=10)
        try:
            store.candidates("iris")
        except LogStoreUnavailable as error:
            errors.append(error)

    threads = [threading.Thread(target=first_use, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for store in stores:
        store.close()

    assert errors == []


def test_an_unreachable_server_raises_unavailable_naming_the_log_without_its_password() -> None:
    store = PostgresStore(f"postgresql://keel:secret@127.0.0.1:{free_port()}/log")

    with pytest.raises(LogStoreUnavailable, match=r"postgresql://keel:\*\*\*@127.0.0.1") as raised:
        store.write([make_record(1)])
    assert "secret" not in str(raised.value)


def test_a_server_stopped_mid_stream_costs_dropped_records_and_writes_resume_on_restart(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    store = PostgresStore(postgres_url, connect_timeout_s=2)
    added = 0

    def add(log: PredictionLog, count: int, tag: str) -> None:
        nonlocal added
        for index in range(count):
            log.add(make_record(added, request_id=f"{tag}-{index}", rows=1))  # never raises
            added += 1

    async def scenario() -> None:
        log = PredictionLog(store, LogStoreSettings(flush_interval_s=0.02, batch_records=10))
        await log.start()
        add(log, 30, "before")
        await wait_until(lambda: log.written == 30)

        await asyncio.to_thread(postgres_server.stop)
        try:
            add(log, 30, "during")
            await wait_until(lambda: log.dropped["store_error"] > 0 and not log.healthy)
        finally:
            await asyncio.to_thread(postgres_server.start)

        add(log, 30, "after")
        await wait_until(lambda: log.healthy and log.pending == 0)
        await log.close()
        assert log.written + log.dropped["store_error"] == added
        assert log.dropped["queue_full"] == 0

    asyncio.run(scenario())

    # The same store object, reconnected by itself.
    written = [record.request_id for record in store.read("iris")]
    store.close()
    assert written[:30] == [f"before-{i}" for i in range(30)]
    assert written[-30:] == [f"after-{i}" for i in range(30)]
