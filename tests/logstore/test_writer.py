"""PredictionLog, the server's batched writer, over a real SQLite store and its failures."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Coroutine, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from logstore_support import make_record, wait_until

from keel.background import LOWEST_PRIORITY
from keel.logstore import CandidateInfo, PredictionLog, PredictionRecord, SQLiteStore
from keel.logstore.writer import WRITER_NICENESS
from keel.settings import LogStoreSettings


class BatchNotingStore(SQLiteStore):
    """A real SQLite store that also notes each batch's size and the thread that wrote it."""

    def __init__(self, path: Path, **options: Any) -> None:
        super().__init__(path, **options)
        self.batches: list[int] = []
        self.threads: set[str] = set()

    def write(self, records: Sequence[PredictionRecord], store_inputs: bool = True) -> None:
        self.batches.append(len(records))
        self.threads.add(threading.current_thread().name)
        super().write(records, store_inputs)


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


def settings(**overrides: Any) -> LogStoreSettings:
    return LogStoreSettings(**{"flush_interval_s": 0.02, "batch_records": 10, **overrides})


def test_records_are_written_in_batches_on_the_logs_own_thread(tmp_path: Path) -> None:
    store = BatchNotingStore(tmp_path / "log.sqlite")

    async def scenario() -> None:
        log = PredictionLog(store, settings())
        await log.start()
        for index in range(35):
            log.add(make_record(index))
        await wait_until(lambda: log.written == 35)
        await log.close()

    run(scenario())

    assert sum(store.batches) == 35
    assert max(store.batches) <= 10
    [thread] = store.threads
    assert thread.startswith("keel-log-writer")
    assert len(store.read("iris")) == 35


def test_a_full_batch_is_written_without_waiting_for_the_interval(tmp_path: Path) -> None:
    store = BatchNotingStore(tmp_path / "log.sqlite")

    async def scenario() -> None:
        log = PredictionLog(store, settings(flush_interval_s=60, batch_records=5))
        await log.start()
        for index in range(7):
            log.add(make_record(index))
        await wait_until(lambda: log.written == 5)
        await asyncio.sleep(0.05)
        assert (log.written, log.pending) == (5, 2)  # a part batch waits for the interval...
        await log.close()
        assert (log.written, log.pending) == (7, 0)  # ...or for close

    run(scenario())

    assert store.batches == [5, 2]


def test_a_full_buffer_drops_new_records_and_counts_them(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "log.sqlite")

    async def scenario() -> None:
        log = PredictionLog(store, settings(max_pending=10))
        for index in range(15):  # before start(): nothing is written yet
            log.add(make_record(index))
        assert (log.pending, log.dropped["queue_full"]) == (10, 5)
        await log.start()
        await log.close()
        assert (log.written, log.pending) == (10, 0)

    run(scenario())

    assert [r.request_id for r in store.read("iris")] == [f"request-{i}" for i in range(10)]


class SlowStore(SQLiteStore):
    """A real SQLite store that takes ``seconds`` more for every batch, as a slow disk would."""

    def __init__(self, path: Path, seconds: float) -> None:
        super().__init__(path)
        self.seconds = seconds

    def write(self, records: Sequence[PredictionRecord], store_inputs: bool = True) -> None:
        time.sleep(self.seconds)
        super().write(records, store_inputs)


def test_the_buffer_holds_what_the_store_was_measured_to_write_in_two_seconds(
    tmp_path: Path,
) -> None:
    # 10 records a batch, 0.1 s a batch: about 100 records/s, so about 200 records.
    store = SlowStore(tmp_path / "log.sqlite", seconds=0.1)

    async def scenario() -> None:
        log = PredictionLog(store, settings(flush_interval_s=60, batch_records=10))
        assert log.pending_limit == log.settings.max_pending  # nothing measured yet
        await log.start()
        for index in range(30):
            log.add(make_record(index))
        await wait_until(lambda: log.written >= 20)
        assert 2 * 40 <= log.pending_limit <= 2 * 100  # 40: a slow, busy test machine
        limit = log.pending_limit
        for index in range(30, 30 + 2 * limit):
            log.add(make_record(index))
        assert log.pending <= limit
        assert log.dropped["queue_full"] >= limit
        await log.close()
        accepted = 30 + 2 * limit - log.dropped["queue_full"]
        assert (log.written, log.dropped["store_error"]) == (accepted, 0)

    run(scenario())


def test_small_batches_do_not_lower_the_limit(tmp_path: Path) -> None:
    store = SlowStore(tmp_path / "log.sqlite", seconds=0.05)

    async def scenario() -> None:
        log = PredictionLog(store, settings(batch_records=100))
        await log.start()
        for index in range(3):
            log.add(make_record(index))
        await wait_until(lambda: log.written == 3)
        # 3 records in 50 ms is the transaction's cost, not a rate of 60 records/s.
        assert log.pending_limit == log.settings.max_pending
        await log.close()

    run(scenario())


def test_the_writer_runs_at_the_priority_it_is_given_not_the_lowest(tmp_path: Path) -> None:
    niceness: list[int] = []

    class PriorityNotingStore(SQLiteStore):
        def write(self, records: Sequence[PredictionRecord], store_inputs: bool = True) -> None:
            niceness.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            super().write(records, store_inputs)

    async def scenario() -> None:
        log = PredictionLog(PriorityNotingStore(tmp_path / "log.sqlite"), settings())
        await log.start()
        log.add(make_record(0))
        await log.close()

    run(scenario())

    # A thread can lower its priority without privilege, never raise it.
    assert niceness == [max(WRITER_NICENESS, os.getpriority(os.PRIO_PROCESS, 0))]
    assert niceness[0] < LOWEST_PRIORITY


def test_close_writes_what_is_pending_and_later_records_are_counted_as_dropped(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "log.sqlite")

    async def scenario() -> None:
        log = PredictionLog(store, settings(flush_interval_s=60, batch_records=500))
        await log.start()
        for index in range(42):
            log.add(make_record(index))
        await log.close()
        assert (log.written, log.pending) == (42, 0)
        log.add(make_record(42))
        assert (log.pending, log.dropped["closed"]) == (0, 1)
        await log.close()  # a second close does nothing

    run(scenario())

    assert len(store.read("iris")) == 42


def test_a_full_disk_costs_failed_batches_only_and_the_log_recovers_when_space_returns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "log.sqlite"
    store = SQLiteStore(path, max_bytes=48 * 1024)  # a disk that holds about a hundred records
    caplog.set_level(logging.INFO, logger="keel.logstore")

    async def scenario() -> None:
        log = PredictionLog(store, settings())
        await log.start()
        for index in range(300):
            log.add(make_record(index))  # never raises, whatever the store does
        await wait_until(lambda: log.pending == 0)
        assert not log.healthy
        assert log.write_failures >= 3  # one failed batch per flush...
        assert log.written + log.dropped["store_error"] == 300
        assert 0 < log.written < 300

        with sqlite3.connect(path) as other:
            other.execute("DELETE FROM keel_predictions")
        for index in range(1000, 1010):
            log.add(make_record(index))
        await wait_until(lambda: log.healthy and log.pending == 0)
        await log.close()
        assert log.dropped["queue_full"] == 0

    run(scenario())

    assert len(store.read("iris")) == 10
    logged = [(r.levelname, r.getMessage()) for r in caplog.records]
    # ...but one warning when the store went down and one line when it came back.
    [down] = [message for level, message in logged if level == "WARNING"]
    assert "database or disk is full" in down
    assert str(path) in down
    [back] = [message for level, message in logged if level == "INFO"]
    assert "is back" in back


def test_a_record_the_store_cannot_encode_costs_its_batch_only(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "log.sqlite")
    unstorable = dataclasses.replace(make_record(1), primary_output={"z": np.array([1j])})

    async def scenario() -> None:
        log = PredictionLog(store, settings(batch_records=1))
        await log.start()
        log.add(unstorable)
        await wait_until(lambda: log.dropped["store_error"] == 1)
        assert not log.healthy
        log.add(make_record(2))
        await wait_until(lambda: log.written == 1 and log.healthy)
        await log.close()

    run(scenario())

    assert [r.request_id for r in store.read("iris")] == ["request-2"]
    assert any(r.levelname == "ERROR" and r.exc_info for r in caplog.records)


def test_candidates_are_kept_and_retried_until_the_store_takes_them(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log's folder should be")
    store = SQLiteStore(blocker / "log.sqlite")
    info = CandidateInfo("iris", "v2", "in-process", 100.0, rss_bytes=1 << 20, host="a:1")

    async def scenario() -> None:
        log = PredictionLog(store, settings())
        await log.start()
        log.add_candidate(info)
        await wait_until(lambda: log.write_failures >= 2)
        assert not log.healthy
        blocker.unlink()
        await wait_until(lambda: log.healthy)
        await log.close()

    run(scenario())

    assert store.candidates("iris") == [info]


def test_close_gives_up_after_its_timeout_and_counts_what_it_could_not_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.sqlite"
    store = SQLiteStore(path, busy_timeout_s=2.0)
    store.write([make_record(0)])
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # every write now waits out the busy timeout

    async def scenario() -> None:
        log = PredictionLog(store, settings(flush_interval_s=60, close_timeout_s=0.1))
        await log.start()
        for index in range(1, 31):
            log.add(make_record(index))
        started = time.monotonic()
        await log.close()
        assert time.monotonic() - started < 1.5  # well before the busy timeout ends
        assert (log.written, log.pending, log.dropped["store_error"]) == (0, 0, 30)

    try:
        run(scenario())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
