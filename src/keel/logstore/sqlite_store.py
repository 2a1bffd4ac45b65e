"""The prediction log in one SQLite file: for one server, or a few on one host."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from keel.logstore.sql_store import SQLStore
from keel.logstore.tables import (
    PREDICTION_COLUMNS,
    PREDICTIONS,
    ColumnKind,
    create_statements,
    insert_statement,
)

_TYPES: dict[ColumnKind, str] = {"text": "TEXT", "float": "REAL", "int": "INTEGER"}
_INSERT_PREDICTION = insert_statement(PREDICTIONS, PREDICTION_COLUMNS, "?")


class SQLiteStore(SQLStore[sqlite3.Connection]):
    """A prediction log in a SQLite file, in WAL mode so that reports read while servers write.

    The file (and its folder) is made on first use. Any SQLite error (disk full,
    locked past the busy timeout, file unreachable) raises ``LogStoreUnavailable``;
    the next call opens the file afresh.

    ``max_bytes`` caps the file's size: past it writes fail as on a full disk, so a
    log on a laptop cannot fill the disk.
    """

    placeholder = "?"
    failures = (sqlite3.Error, OSError)

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        busy_timeout_s: float = 5.0,
        max_bytes: int | None = None,
    ) -> None:
        super().__init__(f"sqlite:///{os.fspath(path)}")
        self.path = Path(path)
        self._busy_timeout_s = busy_timeout_s
        self._max_bytes = max_bytes

    def _insert_predictions(
        self, connection: sqlite3.Connection, rows: list[tuple[object, ...]]
    ) -> None:
        # IMMEDIATE takes the write lock up front, so a busy file waits here (up to
        # the busy timeout) instead of failing half-way through the transaction.
        connection.execute("BEGIN IMMEDIATE")
        connection.executemany(_INSERT_PREDICTION, rows)
        connection.execute("COMMIT")

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self.path,
            timeout=self._busy_timeout_s,
            isolation_level=None,  # transactions are begun explicitly
            check_same_thread=False,  # SQLStore's lock serialises every use
        )
        try:
            connection.execute("PRAGMA journal_mode=WAL")
            # In WAL mode NORMAL never corrupts the file; a power cut may lose the
            # last transactions, which a prediction log can afford.
            connection.execute("PRAGMA synchronous=NORMAL")
            if self._max_bytes is not None:
                page_size = connection.execute("PRAGMA page_size").fetchone()[0]
                connection.execute(f"PRAGMA max_page_count={max(1, self._max_bytes // page_size)}")
            connection.execute("BEGIN IMMEDIATE")
            for statement in create_statements(_TYPES, "INTEGER PRIMARY KEY"):
                connection.execute(statement)
            connection.execute("COMMIT")
        except BaseException:
            connection.close()
            raise
        return connection
