"""A drift window's counts at one moment, and several workers' counts added into one window's.

Each worker process keeps a window of the traffic it answered. Drift must be
judged on all of the server's traffic, so the worker asked for a verdict adds
every worker's totals (their counts, rows and moments are sums; the recent
predictions are pooled) and judges the sum, never averaging verdicts. The JSON
form is what one worker sends another.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.monitoring.layout import Moments


@dataclass(frozen=True)
class WindowTotals:
    """A window's counts summed over its live blocks, and its recent predictions."""

    rows: int
    observed: int
    counts: npt.NDArray[np.int64]
    moments: Moments
    recent_slots: npt.NDArray[np.int64]
    """(recent rows, prediction columns) count slots of the latest predictions."""
    recent_values: npt.NDArray[np.float64]
    """(recent rows, numeric prediction columns) the latest values, by moment index."""

    def to_json(self) -> dict[str, Any]:
        return {
            "rows": self.rows,
            "observed": self.observed,
            "counts": _array(self.counts),
            "moments": [_array(part) for part in _moment_parts(self.moments)],
            "recent_slots": _array(self.recent_slots),
            "recent_values": _array(self.recent_values),
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WindowTotals:
        parts = [_read(part, np.float64) for part in data["moments"]]
        return cls(
            rows=int(data["rows"]),
            observed=int(data["observed"]),
            counts=_read(data["counts"], np.int64),
            moments=Moments(*parts),
            recent_slots=_read(data["recent_slots"], np.int64),
            recent_values=_read(data["recent_values"], np.float64),
        )

    def fits(self, other: WindowTotals) -> bool:
        """Whether ``other`` is a window of the same layout (the same version's)."""
        return (
            self.counts.shape == other.counts.shape
            and self.recent_slots.shape[1:] == other.recent_slots.shape[1:]
            and self.recent_values.shape[1:] == other.recent_values.shape[1:]
            and [a.shape for a in _moment_parts(self.moments)]
            == [b.shape for b in _moment_parts(other.moments)]
        )


def merged(parts: Sequence[WindowTotals], recent_rows: int) -> WindowTotals:
    """One window's totals from several workers' windows of the same version.

    Counts, rows and moments add up. The recent predictions are pooled, an equal
    share of ``recent_rows`` from each worker, so the collapse check sees every
    worker's latest traffic.
    """
    if len(parts) == 1:
        return parts[0]
    take = max(1, recent_rows // len(parts))
    columns = zip(*(_moment_parts(p.moments) for p in parts), strict=True)
    moments = [np.sum(column, axis=0) for column in columns]
    return WindowTotals(
        rows=sum(p.rows for p in parts),
        observed=sum(p.observed for p in parts),
        counts=np.sum([p.counts for p in parts], axis=0),
        moments=Moments(*moments),
        recent_slots=np.concatenate([p.recent_slots[-take:] for p in parts])[-recent_rows:],
        recent_values=np.concatenate([p.recent_values[-take:] for p in parts])[-recent_rows:],
    )


def _moment_parts(moments: Moments) -> tuple[npt.NDArray[np.float64], ...]:
    return (moments.sums, moments.squares, moments.finite, moments.entropy, moments.entropy_rows)


def _array(array: npt.NDArray[Any]) -> dict[str, Any]:
    return {"shape": list(array.shape), "data": array.ravel().tolist()}


def _read(data: dict[str, Any], dtype: type[np.generic]) -> npt.NDArray[Any]:
    return np.asarray(data["data"], dtype=dtype).reshape(data["shape"])
