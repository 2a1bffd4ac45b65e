"""Turning tabular data (records, columns, a DataFrame, a CSV or JSON file) into JSON records.

Publishing keeps real input rows as golden examples in metadata.json, so rows
must become plain JSON values: numpy scalars unwrapped, pandas' missing
markers turned into None.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from keel.errors import FieldError, InvalidRequest, KeelError
from keel.signature import Signature

Record = dict[str, Any]


def as_records(data: Any) -> list[Record]:
    """Records from a list of dicts, a dict of columns or a pandas DataFrame."""
    if hasattr(data, "to_dict") and hasattr(data, "columns"):
        # pandas marks missing values with NaN (or NA), so there NaN means missing.
        return [
            {str(k): _plain(v, nan_is_missing=True) for k, v in row.items()}
            for row in data.to_dict("records")
        ]
    if isinstance(data, Mapping):
        columns = {str(k): list(v) for k, v in data.items()}
        lengths = {len(v) for v in columns.values()}
        if len(lengths) > 1:
            raise KeelError(f"columns have different lengths: {sorted(lengths)}")
        rows = lengths.pop() if lengths else 0
        return [{k: _plain(v[i]) for k, v in columns.items()} for i in range(rows)]
    if isinstance(data, Sequence) and not isinstance(data, str | bytes):
        return [{str(k): _plain(v) for k, v in row.items()} for row in data]
    raise KeelError(
        f"cannot read records from {type(data).__name__}: pass a list of dicts, "
        "a dict of columns or a pandas DataFrame"
    )


def _plain(value: Any, nan_is_missing: bool = False) -> Any:
    if isinstance(value, np.generic):
        value = value.item()
    if nan_is_missing and isinstance(value, float) and math.isnan(value):
        return None
    if type(value).__name__ in {"NAType", "NaTType"}:
        return None
    return value


def is_json_safe(record: Mapping[str, Any]) -> bool:
    """True when every value survives JSON unchanged (no NaN or infinity)."""
    return not any(isinstance(v, float) and not math.isfinite(v) for v in record.values())


def read_records(path: Path, signature: Signature) -> list[Record]:
    """Read a data file: ``.json`` (a list of records), ``.jsonl``, or ``.csv`` with a header.

    CSV cells are text, so each is parsed by its feature's declared dtype; an
    empty cell is a missing value. Columns the signature does not know are
    kept, so validation can name them.
    """
    suffix = path.suffix.lower()
    try:
        if suffix == ".json":
            loaded = json.loads(path.read_text())
            if not isinstance(loaded, list):
                raise KeelError(f"{path}: expected a JSON list of records")
            return as_records(loaded)
        if suffix == ".jsonl":
            return as_records(
                [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
            )
        if suffix == ".csv":
            with path.open(newline="") as handle:
                return _parse_csv(csv.DictReader(handle), signature)
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise KeelError(f"cannot read {path}: {exc}") from exc
    raise KeelError(f"{path}: unsupported data file (use .csv, .json or .jsonl)")


def _parse_csv(rows: Iterable[Mapping[str, str]], signature: Signature) -> list[Record]:
    dtypes = {f.name: f.dtype for f in signature.features}
    records: list[Record] = []
    errors: list[FieldError] = []
    for index, row in enumerate(rows):
        record: Record = {}
        for key, text in row.items():
            try:
                record[key] = _parse_cell(text, dtypes.get(key))
            except ValueError:
                errors.append(
                    FieldError(index, key, "type", f"{text!r} is not a valid {dtypes.get(key)}")
                )
        records.append(record)
    if errors:
        raise InvalidRequest(errors)
    return records


def _parse_cell(text: str | None, dtype: str | None) -> Any:
    if text is None or text == "":
        return None
    if dtype == "float":
        return float(text)
    if dtype == "int":
        return int(text)
    if dtype == "bool":
        lowered = text.strip().lower()
        if lowered in {"true", "1"}:
            return True
        if lowered in {"false", "0"}:
            return False
        raise ValueError(text)
    return text
