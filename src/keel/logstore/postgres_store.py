"""The prediction log in PostgreSQL: one log that many servers write to at once."""

from __future__ import annotations

import math
from typing import Any

from keel.errors import KeelError
from keel.logstore.opening import POSTGRES_MISSING, redacted_url
from keel.logstore.sql_store import SQLStore
from keel.logstore.tables import PREDICTION_COLUMNS, PREDICTIONS, ColumnKind, create_statements

try:
    import psycopg
    import psycopg.conninfo
except ImportError as missing:
    raise KeelError(POSTGRES_MISSING) from missing

# Tensors are stored as JSON text, not jsonb: the log writes far more than it queries,
# jsonb would turn every float into a numeric on the way in, and reads decode in Python.
_TYPES: dict[ColumnKind, str] = {"text": "text", "float": "double precision", "int": "bigint"}
_COPY_PREDICTIONS = (
    f"COPY {PREDICTIONS} ({', '.join(c.name for c in PREDICTION_COLUMNS)}) FROM STDIN"
)
# Servers starting together would race on CREATE TABLE IF NOT EXISTS (it is not atomic
# in PostgreSQL); this transaction-scoped advisory lock ("keel" in ASCII) orders them.
_SCHEMA_LOCK = 0x6B65656C

PostgresConnection = psycopg.Connection[tuple[Any, ...]]


class PostgresStore(SQLStore[PostgresConnection]):
    """A prediction log in a PostgreSQL database, written with COPY.

    Connects on first use and creates the tables if they are missing. Any database
    error (server down, connection lost, disk full) raises ``LogStoreUnavailable``;
    the next call connects again. ``url`` is the given URL with any password
    hidden, fit for logs and metrics.
    """

    placeholder = "%s"
    failures = (psycopg.Error,)

    def __init__(self, url: str, *, connect_timeout_s: float = 5.0) -> None:
        super().__init__(redacted_url(url))
        try:
            psycopg.conninfo.conninfo_to_dict(url)
        except psycopg.ProgrammingError as error:
            raise KeelError(f"prediction log URL '{self.url}' is malformed: {error}") from None
        self._conninfo = url
        # libpq takes whole seconds, and treats anything under 2 as 2.
        self._connect_timeout = max(2, math.ceil(connect_timeout_s))

    def _insert_predictions(
        self, connection: PostgresConnection, rows: list[tuple[object, ...]]
    ) -> None:
        with (
            connection.transaction(),
            connection.cursor() as cursor,
            cursor.copy(_COPY_PREDICTIONS) as copy,
        ):
            for row in rows:
                copy.write_row(row)

    def _connect(self) -> PostgresConnection:
        connection = psycopg.connect(
            self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
        )
        try:
            with connection.transaction():
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in create_statements(_TYPES, "bigserial PRIMARY KEY"):
                    connection.execute(statement)
        except BaseException:
            connection.close()
            raise
        return connection
