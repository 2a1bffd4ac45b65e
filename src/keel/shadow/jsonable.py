"""Numpy values, non-finite floats and times made into data ``json.dumps`` writes as strict JSON."""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """``value`` with numpy types as Python ones, NaN and infinities as None, bytes as text.

    Strict JSON has no NaN: a reader in another language would choke on the
    ``NaN`` token Python writes by default.
    """
    if isinstance(value, np.ndarray | np.generic):
        return jsonable(value.tolist())
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    return value


def iso_time(at: float) -> str:
    """Unix time as ISO 8601 UTC with milliseconds, e.g. 2025-01-31T12:00:00.000Z."""
    return datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
