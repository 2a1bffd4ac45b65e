"""The prediction log's two tables, laid out the same way in every SQL store.

The stores differ in column types, placeholders and how rows are sent; what a row
holds, how a record becomes one and how it is read back live here, once.

SQL is assembled from this module's own table and column names and the store's
placeholder, never from data: values always travel as parameters (hence the
``noqa: S608``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from keel.logstore.records import (
    CandidateInfo,
    CandidateStatus,
    PredictionRecord,
    Tensors,
    input_digest,
)
from keel.logstore.tensor_codec import decode_tensors, encode_tensors

PREDICTIONS = "keel_predictions"
CANDIDATES = "keel_candidates"

ColumnKind = Literal["text", "float", "int"]


@dataclass(frozen=True, slots=True)
class Column:
    """One column: its name, what it holds, and whether it may be NULL."""

    name: str
    kind: ColumnKind
    nullable: bool = False


PREDICTION_COLUMNS = (
    Column("at", "float"),
    Column("request_id", "text"),
    Column("model", "text"),
    Column("primary_version", "text"),
    Column("candidate_version", "text", nullable=True),
    Column("row_count", "int"),
    Column("status", "text"),
    Column("primary_ms", "float"),
    Column("candidate_ms", "float", nullable=True),
    # NULL only for a record that came with neither inputs nor their hash.
    Column("input_hash", "text", nullable=True),
    Column("inputs", "text", nullable=True),
    Column("primary_output", "text"),
    Column("candidate_output", "text", nullable=True),
    Column("error", "text", nullable=True),
)

CANDIDATE_COLUMNS = (
    Column("model", "text"),
    Column("candidate_version", "text"),
    Column("kind", "text"),
    Column("started_at", "float"),
    Column("rss_bytes", "int", nullable=True),
    Column("source", "text"),
    Column("host", "text"),
)


def create_statements(types: Mapping[ColumnKind, str], id_type: str) -> list[str]:
    """``CREATE ... IF NOT EXISTS`` for both tables and their indexes, in a store's types."""

    def table(name: str, columns: Sequence[Column]) -> str:
        fields = [f"id {id_type}"] + [
            f"{c.name} {types[c.kind]}{'' if c.nullable else ' NOT NULL'}" for c in columns
        ]
        return f"CREATE TABLE IF NOT EXISTS {name} ({', '.join(fields)})"

    return [
        table(PREDICTIONS, PREDICTION_COLUMNS),
        # Every read is one model over a time range.
        f"CREATE INDEX IF NOT EXISTS {PREDICTIONS}_model_at ON {PREDICTIONS} (model, at)",
        table(CANDIDATES, CANDIDATE_COLUMNS),
    ]


def insert_statement(table: str, columns: Sequence[Column], placeholder: str) -> str:
    names = ", ".join(c.name for c in columns)
    values = ", ".join(placeholder for _ in columns)
    return f"INSERT INTO {table} ({names}) VALUES ({values})"  # noqa: S608 - see module doc


def select_predictions(
    placeholder: str,
    model: str,
    since: float | None,
    until: float | None,
    candidate_version: str | None,
) -> tuple[str, list[object]]:
    """The query (and its parameters) behind ``LogStore.read``."""
    conditions = [f"model = {placeholder}"]
    parameters: list[object] = [model]
    for condition, value in (
        (f"at >= {placeholder}", since),
        (f"at < {placeholder}", until),
        (f"candidate_version = {placeholder}", candidate_version),
    ):
        if value is not None:
            conditions.append(condition)
            parameters.append(value)
    names = ", ".join(c.name for c in PREDICTION_COLUMNS)
    where = " AND ".join(conditions)
    query = f"SELECT {names} FROM {PREDICTIONS} WHERE {where} ORDER BY at, id"  # noqa: S608
    return query, parameters


def select_candidates(placeholder: str) -> str:
    names = ", ".join(c.name for c in CANDIDATE_COLUMNS)
    where = f"model = {placeholder}"
    return f"SELECT {names} FROM {CANDIDATES} WHERE {where} ORDER BY started_at, id"  # noqa: S608


def prediction_row(record: PredictionRecord, store_inputs: bool) -> tuple[object, ...]:
    """``record`` as the values of ``PREDICTION_COLUMNS``, its tensors encoded."""
    input_hash = record.input_hash
    if input_hash is None and record.inputs is not None:
        input_hash = input_digest(record.inputs)
    return (
        record.at,
        record.request_id,
        record.model,
        record.primary_version,
        record.candidate_version,
        record.rows,
        str(record.status),
        record.primary_ms,
        record.candidate_ms,
        input_hash,
        _encoded(record.inputs) if store_inputs else None,
        encode_tensors(record.primary_output),
        _encoded(record.candidate_output),
        record.error,
    )


def _encoded(tensors: Tensors | None) -> str | None:
    return None if tensors is None else encode_tensors(tensors)


def prediction_from_row(row: Sequence[Any]) -> PredictionRecord:
    """The record a row of ``PREDICTION_COLUMNS`` holds, tensors decoded."""
    value = dict(zip((c.name for c in PREDICTION_COLUMNS), row, strict=True))
    return PredictionRecord(
        at=value["at"],
        request_id=value["request_id"],
        model=value["model"],
        primary_version=value["primary_version"],
        candidate_version=value["candidate_version"],
        rows=value["row_count"],
        status=CandidateStatus(value["status"]),
        primary_ms=value["primary_ms"],
        primary_output=decode_tensors(value["primary_output"]),
        inputs=_decoded(value["inputs"]),
        input_hash=value["input_hash"],
        candidate_ms=value["candidate_ms"],
        candidate_output=_decoded(value["candidate_output"]),
        error=value["error"],
    )


def _decoded(text: str | None) -> Tensors | None:
    return None if text is None else decode_tensors(text)


def candidate_row(info: CandidateInfo) -> tuple[object, ...]:
    return (
        info.model,
        info.candidate_version,
        info.kind,
        info.started_at,
        info.rss_bytes,
        info.source,
        info.host,
    )


def candidate_from_row(row: Sequence[Any]) -> CandidateInfo:
    return CandidateInfo(*row)
