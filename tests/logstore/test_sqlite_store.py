"""The SQLite log under the failures a file meets: full, locked, gone; and back again."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from logstore_support import make_record

from keel.errors import LogStoreUnavailable
from keel.logstore import SQLiteStore


def fill(store: SQLiteStore) -> int:
    """Write records one at a time until the store refuses; how many it took."""
    for index in range(10_000):
        try:
            store.write([make_record(index)])
        except LogStoreUnavailable:
            return index
    raise AssertionError("the store never filled up")


def test_file_is_in_wal_mode_with_an_index_on_model_and_time(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "log.sqlite")
    store.write([make_record(1)])
    store.close()

    with sqlite3.connect(tmp_path / "log.sqlite") as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        [index] = connection.execute("PRAGMA index_list(keel_predictions)").fetchall()
        columns = connection.execute(f"PRAGMA index_info({index[1]})").fetchall()
    assert [column[2] for column in columns] == ["model", "at"]


def test_a_full_disk_raises_unavailable_and_writes_resume_once_space_is_freed(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "log.sqlite", max_bytes=48 * 1024)
    taken = fill(store)
    assert taken > 5

    with pytest.raises(LogStoreUnavailable, match="database or disk is full"):
        store.write([make_record(99_999)])
    assert len(store.read("iris")) == taken  # the refused writes left nothing behind

    with sqlite3.connect(tmp_path / "log.sqlite") as other:
        other.execute("DELETE FROM keel_predictions WHERE request_id != 'request-0'")

    store.write([make_record(99_999)])
    assert [r.request_id for r in store.read("iris")] == ["request-0", "request-99999"]


def test_a_file_locked_past_the_busy_timeout_raises_unavailable_then_recovers(
    tmp_path: Path,
) -> None:
    store = SQLiteStore(tmp_path / "log.sqlite", busy_timeout_s=0.05)
    store.write([make_record(1)])
    holder = sqlite3.connect(tmp_path / "log.sqlite", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(LogStoreUnavailable, match="locked"):
            store.write([make_record(2)])
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    store.write([make_record(3)])
    assert [r.request_id for r in store.read("iris")] == ["request-1", "request-3"]


def test_an_unreachable_file_raises_unavailable_until_it_can_be_made(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_text("a file where the log's folder should be")
    store = SQLiteStore(blocker / "log.sqlite")

    with pytest.raises(LogStoreUnavailable, match=r"sqlite:///.*logs/log.sqlite"):
        store.write([make_record(1)])
    with pytest.raises(LogStoreUnavailable):
        store.read("iris")

    blocker.unlink()
    store.write([make_record(2)])
    assert [r.request_id for r in store.read("iris")] == ["request-2"]
