"""What the SQL log stores share: one connection, its failures, and the log's queries."""

from __future__ import annotations

import abc
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, ClassVar, Generic, Protocol, TypeVar

from keel.errors import LogStoreUnavailable
from keel.logstore.records import CandidateInfo, PredictionRecord
from keel.logstore.tables import (
    CANDIDATE_COLUMNS,
    CANDIDATES,
    candidate_from_row,
    candidate_row,
    insert_statement,
    prediction_from_row,
    prediction_row,
    select_candidates,
    select_predictions,
)


class Rows(Protocol):
    def fetchall(self) -> list[Any]: ...


class Connection(Protocol):
    """The part of a DB-API connection (sqlite3's, psycopg's) the stores use in common."""

    def execute(self, query: str, parameters: Any = ..., /) -> Rows: ...

    def close(self) -> None: ...


ConnectionT = TypeVar("ConnectionT", bound=Connection)

# Longest the log writer encodes records holding the interpreter lock before it
# lets the event loop have it: what a request arriving meanwhile can wait.
HOLD_S = 50e-6


class SQLStore(abc.ABC, Generic[ConnectionT]):
    """A log store over one connection, shared by threads under a lock.

    The connection is made on first use. Any of the database's ``failures`` raises
    ``LogStoreUnavailable`` and throws the connection away: after a full disk, a
    lost server or a replaced file, the next call starts afresh on a new one.
    """

    placeholder: ClassVar[str]
    failures: ClassVar[tuple[type[Exception], ...]]

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Lock()
        self._connection: ConnectionT | None = None

    @abc.abstractmethod
    def _connect(self) -> ConnectionT:
        """A new connection, the tables created if they are missing."""

    @abc.abstractmethod
    def _insert_predictions(self, connection: ConnectionT, rows: list[tuple[object, ...]]) -> None:
        """Insert ``rows`` (of ``PREDICTION_COLUMNS``) in one transaction."""

    def write(self, records: Sequence[PredictionRecord], store_inputs: bool = True) -> None:
        """Append ``records`` in one transaction; all or none are stored."""
        if not records:
            return
        # Encoded before the lock is taken: a reader need not wait for JSON.
        rows = []
        held_since = time.perf_counter()
        for record in records:
            rows.append(prediction_row(record, store_inputs))
            # This runs on the log writer's thread, holding the interpreter lock; a
            # request arriving meanwhile would wait for it up to the switch interval
            # (0.5 ms), which showed in the primary's p99. So the lock is handed back
            # every HOLD_S. Not after every record: the hand-back (a system call) costs
            # about 25 µs here, three times what encoding a one-row record does.
            if time.perf_counter() - held_since > HOLD_S:
                time.sleep(0)
                held_since = time.perf_counter()
        with self._connected("write records") as connection:
            self._insert_predictions(connection, rows)

    def record_candidate(self, info: CandidateInfo) -> None:
        """Note that a server started a candidate (what it is, what memory it took)."""
        insert = insert_statement(CANDIDATES, CANDIDATE_COLUMNS, self.placeholder)
        with self._connected("record a candidate") as connection:
            connection.execute(insert, candidate_row(info))

    def read(
        self,
        model: str,
        since: float | None = None,
        until: float | None = None,
        candidate_version: str | None = None,
    ) -> list[PredictionRecord]:
        """Records of ``model`` with ``since <= at < until``, oldest first."""
        query, parameters = select_predictions(
            self.placeholder, model, since, until, candidate_version
        )
        with self._connected("read records") as connection:
            rows = connection.execute(query, parameters).fetchall()
        return [prediction_from_row(row) for row in rows]

    def candidates(self, model: str) -> list[CandidateInfo]:
        """Every candidate started for ``model``, oldest first."""
        with self._connected("read candidates") as connection:
            rows = connection.execute(select_candidates(self.placeholder), (model,)).fetchall()
        return [candidate_from_row(row) for row in rows]

    def close(self) -> None:
        with self._lock:
            self._discard()

    @contextlib.contextmanager
    def _connected(self, action: str) -> Iterator[ConnectionT]:
        with self._lock:
            try:
                if self._connection is None:
                    self._connection = self._connect()
                yield self._connection
            except self.failures as error:
                # Closing rolls back what the failed call began, and no later call
                # inherits a connection that may be dead.
                self._discard()
                raise LogStoreUnavailable(
                    f"prediction log {self.url}: could not {action}: {error}"
                ) from error

    def _discard(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
