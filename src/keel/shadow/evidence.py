"""The rows both models answered, output by output, and the rows where they disagree most."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.errors import KeelError
from keel.logstore.records import PredictionRecord
from keel.shadow.comparison import (
    ComparedAs,
    LabelComparison,
    ScoreComparison,
    compare_labels,
    compare_scores,
    compared_as,
    label_names,
    rows_agree,
)
from keel.shadow.jsonable import iso_time, jsonable
from keel.signature import Output


@dataclass(frozen=True, eq=False)
class RowMap:
    """Where each compared row came from: which record, which row within it."""

    record: npt.NDArray[np.int64]
    row: npt.NDArray[np.int64]

    @classmethod
    def of(cls, records: Sequence[PredictionRecord]) -> RowMap:
        sizes = np.array([r.rows for r in records], dtype=np.int64)
        if np.any(sizes < 0):
            raise KeelError("a logged record has a negative row count: the log is corrupt")
        starts = np.cumsum(sizes) - sizes
        total = int(sizes.sum())
        return cls(
            record=np.repeat(np.arange(len(records), dtype=np.int64), sizes),
            row=np.arange(total, dtype=np.int64) - np.repeat(starts, sizes),
        )

    @property
    def rows(self) -> int:
        return int(self.record.size)


@dataclass(frozen=True, eq=False)
class ComparedOutput:
    """One output's values from both models over the compared rows, and how they compare."""

    name: str
    kind: str
    """The signature's kind (label, probability, score, regression), else how it is compared."""
    compared_as: ComparedAs
    primary: npt.NDArray[Any]
    candidate: npt.NDArray[Any]
    comparison: LabelComparison | ScoreComparison | None
    labels: tuple[str, ...] | None = None
    problem: str | None = None
    """Why the output could not be compared (then ``comparison`` is None)."""

    @property
    def rows(self) -> int:
        return int(self.primary.shape[0]) if self.comparison is not None else 0

    @property
    def psi(self) -> float | None:
        return None if self.comparison is None else self.comparison.psi

    def to_dict(self) -> dict[str, Any]:
        """The comparison's figures as JSON data, or the problem that prevented it."""
        entry: dict[str, Any] = {
            "kind": self.kind,
            "compared_as": self.compared_as,
            "rows": self.rows,
        }
        comparison = self.comparison
        if comparison is None:
            entry["problem"] = self.problem
        elif isinstance(comparison, LabelComparison):
            entry |= {
                "agreement": comparison.agreement,
                "categories": list(comparison.categories),
                "names": label_names(comparison.categories, self.labels),
                "confusion": comparison.confusion.tolist(),
                "psi": comparison.psi,
            }
        else:
            entry |= {
                "agreement": comparison.agreement,
                "width": len(comparison.correlation),
                "mean_abs_diff": comparison.mean_abs_diff,
                "p99_abs_diff": comparison.p99_abs_diff,
                "max_abs_diff": comparison.max_abs_diff,
                "correlation": list(comparison.correlation),
                "non_finite_rows": comparison.non_finite_rows,
                "psi": comparison.psi,
                "psi_by_element": list(comparison.psi_by_element),
            }
        result: dict[str, Any] = jsonable(entry)
        return result


@dataclass(frozen=True)
class Disagreement:
    """One row the two models answered differently."""

    request_id: str
    row: int
    at: float
    difference: float
    """Largest absolute difference of the row's float outputs; 1.0 for labels alone."""
    outputs: dict[str, tuple[Any, Any]]
    """Output name -> (primary value, candidate value), as JSON data."""
    inputs: dict[str, Any] | None
    input_hash: str | None

    def to_dict(self) -> dict[str, Any]:
        document = {
            "request_id": self.request_id,
            "row": self.row,
            "at": iso_time(self.at),
            "difference": self.difference,
            "outputs": {
                name: {"primary": primary, "candidate": candidate}
                for name, (primary, candidate) in self.outputs.items()
            },
            "input": self.inputs,
            "input_hash": self.input_hash,
        }
        result: dict[str, Any] = jsonable(document)
        return result


def compare_outputs(
    ok: Sequence[PredictionRecord], declared: Sequence[Output], tolerance: float
) -> tuple[ComparedOutput, ...]:
    """Every output of the primary's answers compared with the candidate's, row by row."""
    if not ok:
        return ()
    by_name = {o.name: o for o in declared}
    present = list(ok[0].primary_output)
    names = [o.name for o in declared if o.name in present] + [
        n for n in present if n not in by_name
    ]
    return tuple(_compare_one(name, ok, by_name.get(name), tolerance) for name in names)


def agreeing_rows(outputs: Sequence[ComparedOutput]) -> npt.NDArray[np.bool_] | None:
    """Per compared row, whether the models agree (``rows_agree``); None if nothing compared."""
    compared = [o.comparison for o in outputs if o.comparison is not None]
    return rows_agree(
        [c.agreeing for c in compared if isinstance(c, LabelComparison)],
        [c.within_tolerance for c in compared if isinstance(c, ScoreComparison)],
    )


def disagreements(
    ok: Sequence[PredictionRecord],
    row_map: RowMap,
    outputs: Sequence[ComparedOutput],
    top: int,
) -> tuple[Disagreement, ...]:
    """The ``top`` rows that disagree (see :func:`agreeing_rows`), largest first, then oldest."""
    agreeing = agreeing_rows(outputs)
    if agreeing is None or top == 0:
        return ()
    compared = [o for o in outputs if o.comparison is not None]
    scores = [
        o.comparison.row_difference for o in compared if isinstance(o.comparison, ScoreComparison)
    ]
    size = np.max(scores, axis=0) if scores else np.ones(row_map.rows, dtype=np.float64)
    at = np.array([r.at for r in ok])[row_map.record]
    candidates = np.flatnonzero(~agreeing)
    order = candidates[np.lexsort((at[candidates], -size[candidates]))][:top]
    return tuple(_disagreement(ok, row_map, compared, int(i), float(size[i])) for i in order)


def _compare_one(
    name: str, ok: Sequence[PredictionRecord], declared: Output | None, tolerance: float
) -> ComparedOutput:
    declared_kind = declared.kind if declared is not None else None
    labels = tuple(declared.labels) if declared is not None and declared.labels else None
    try:
        primary, candidate = _stack(name, ok)
    except _Incomparable as exc:
        empty = np.empty(0)
        return ComparedOutput(
            name=name,
            kind=declared_kind or "unknown",
            compared_as="label" if declared_kind == "label" else "score",
            primary=empty,
            candidate=empty,
            comparison=None,
            labels=labels,
            problem=str(exc),
        )
    how = compared_as(primary.dtype, declared_kind)
    comparison: LabelComparison | ScoreComparison
    if how == "label":
        comparison = compare_labels(primary, candidate)
    else:
        comparison = compare_scores(primary, candidate, tolerance=tolerance)
    return ComparedOutput(name, declared_kind or how, how, primary, candidate, comparison, labels)


class _Incomparable(Exception):
    """An output the two models' answers cannot be lined up on, with the reason."""


def _stack(name: str, ok: Sequence[PredictionRecord]) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    primary, candidate = [], []
    for record in ok:
        if name not in record.primary_output:
            raise _Incomparable(f"request {record.request_id!r}: the primary gave no '{name}'")
        if record.candidate_output is None or name not in record.candidate_output:
            raise _Incomparable(f"request {record.request_id!r}: the candidate gave no '{name}'")
        p = np.asarray(record.primary_output[name])
        c = np.asarray(record.candidate_output[name])
        if p.ndim == 0 or p.shape[0] != record.rows or p.shape != c.shape:
            raise _Incomparable(
                f"request {record.request_id!r} ({record.rows} rows): the primary's "
                f"'{name}' has shape {p.shape}, the candidate's {c.shape}"
            )
        primary.append(p)
        candidate.append(c)
    try:
        return np.concatenate(primary), np.concatenate(candidate)
    except ValueError:
        shapes = sorted({str(p.shape[1:]) for p in primary})
        raise _Incomparable(
            f"'{name}' changes shape between requests (per-row shapes {', '.join(shapes)})"
        ) from None


def _disagreement(
    ok: Sequence[PredictionRecord],
    row_map: RowMap,
    outputs: Sequence[ComparedOutput],
    index: int,
    size: float,
) -> Disagreement:
    record = ok[int(row_map.record[index])]
    row = int(row_map.row[index])
    inputs = None
    if record.inputs is not None:
        inputs = {
            name: jsonable(np.asarray(values)[row])
            for name, values in record.inputs.items()
            if np.ndim(values) > 0 and row < len(values)
        }
    return Disagreement(
        request_id=record.request_id,
        row=row,
        at=record.at,
        difference=size,
        outputs={
            o.name: (jsonable(o.primary[index]), jsonable(o.candidate[index])) for o in outputs
        },
        inputs=inputs,
        input_hash=record.input_hash,
    )
