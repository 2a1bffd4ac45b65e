"""The shadow's live gauges: agreement and mean differences over the last compared rows.

Rows are judged by the report's rule (``comparison.rows_agree``) on the same
per-row primitives, so the live gauges and ``keel shadow report`` agree.

This runs on the serving loop once per mirrored request. For one-row requests
the cost is the dozen numpy calls, not the rows: judged one pair at a time it
was about 40% of a mirrored call's work on the loop (py-spy, remote candidate
at 500 req/s), time a primary request arriving meanwhile waits through. So
pairs are kept as they come and judged together, one set of numpy calls for up
to ``JUDGE_EVERY`` pairs of one shape, whenever that many are waiting and
whenever a figure is read; the figures are the same as one at a time.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.logstore.records import Tensors
from keel.shadow.comparison import compared_as, element_differences, rows_agree, rows_equal
from keel.signature.output import Output

# Rows behind the live agreement and difference gauges: recent enough to move
# within minutes of a change, many enough not to flicker.
LIVE_ROWS = 1000
# Pairs judged in one pass; a reader never sees figures older than its read.
JUDGE_EVERY = 64

_Pair = tuple[Sequence[Output], Tensors, Tensors]
# Per pair: rows, agreeing rows, and per float output (sum, count) of its finite
# absolute differences.
_Judged = tuple[int, int, dict[str, tuple[float, int]]]


class LiveComparison:
    """Agreement and mean absolute differences over the last ``LIVE_ROWS`` compared rows."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self._rows_compared = 0
        self._rows_agreeing = 0
        self._waiting: list[_Pair] = []
        self._recent: deque[_Judged] = deque()
        self._recent_rows = 0

    def add(self, outputs: Sequence[Output], primary: Tensors, candidate: Tensors) -> None:
        self._waiting.append((outputs, primary, candidate))
        if len(self._waiting) >= JUDGE_EVERY:
            self._judge_waiting()

    @property
    def rows_compared(self) -> int:
        self._judge_waiting()
        return self._rows_compared

    @property
    def rows_agreeing(self) -> int:
        self._judge_waiting()
        return self._rows_agreeing

    @property
    def recent_rows(self) -> int:
        """Rows behind ``agreement`` and ``mean_differences`` (at most ``LIVE_ROWS``)."""
        self._judge_waiting()
        return self._recent_rows

    def agreement(self) -> float | None:
        """Share of the recent compared rows that agree; None before any."""
        self._judge_waiting()
        if not self._recent_rows:
            return None
        return sum(a for _, a, _ in self._recent) / self._recent_rows

    def mean_differences(self) -> dict[str, float]:
        """Mean absolute difference per float output over the recent rows."""
        return {
            name: total / count for name, (total, count) in self.difference_sums().items() if count
        }

    def difference_sums(self) -> dict[str, tuple[float, int]]:
        """Per float output, the sum and count of finite absolute differences over the recent
        rows: what ``mean_differences`` divides, and what several workers' windows add."""
        self._judge_waiting()
        totals: dict[str, float] = defaultdict(float)
        counts: dict[str, int] = defaultdict(int)
        for _, _, differences in self._recent:
            for name, (total, count) in differences.items():
                totals[name] += total
                counts[name] += count
        return {name: (totals[name], counts[name]) for name in totals}

    def _judge_waiting(self) -> None:
        waiting, self._waiting = self._waiting, []
        run: list[_Pair] = []
        run_rows: list[int] = []
        run_shape: object = None
        for pair in waiting:
            stacking = _stacking(pair)
            shape, rows = (None, 0) if stacking is None else stacking
            # Judged in the order they came, so the window drops the oldest first.
            if run and shape != run_shape:
                self._keep(_judge(self.tolerance, run, run_rows))
                run, run_rows = [], []
            if stacking is None:
                self._keep(_judge(self.tolerance, [pair], None))
                continue
            run.append(pair)
            run_rows.append(rows)
            run_shape = shape
        if run:
            self._keep(_judge(self.tolerance, run, run_rows))

    def _keep(self, judged: list[_Judged]) -> None:
        for entry in judged:
            rows, agree, _ = entry
            self._rows_compared += rows
            self._rows_agreeing += agree
            self._recent.append(entry)
            self._recent_rows += rows
            while self._recent_rows - self._recent[0][0] >= LIVE_ROWS:
                self._recent_rows -= self._recent.popleft()[0]


def _stacking(pair: _Pair) -> tuple[object, int] | None:
    """What pairs must share to be judged stacked, and the pair's rows; None to judge it alone.

    Alone: one whose compared outputs differ in rows (a candidate answering
    another shape), or that has no rows at all.
    """
    outputs, primary, candidate = pair
    key: list[object] = [id(outputs)]
    rows = None
    for output in outputs:
        ours, theirs = primary.get(output.name), candidate.get(output.name)
        if ours is None or theirs is None:
            key.append(None)
            continue
        if ours.shape != theirs.shape or ours.ndim == 0 or rows not in (None, len(ours)):
            return None
        rows = len(ours)
        key.append((ours.dtype, theirs.dtype, ours.shape[1:]))
    return None if not rows else (tuple(key), rows)


def _judge(tolerance: float, pairs: list[_Pair], rows_each: list[int] | None) -> list[_Judged]:
    """Per pair, its rows, agreeing rows and finite differences; [] when nothing compares.

    Pairs with ``rows_each`` share a ``_stacking`` shape and are judged as one array
    per output; without, ``pairs`` is one pair judged as it is.
    """
    outputs = pairs[0][0]
    labels: list[npt.NDArray[np.bool_]] = []
    close: list[npt.NDArray[np.bool_]] = []
    finite_rows: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.int64]]] = {}
    rows = 0
    for output in outputs:
        sides = [(p.get(output.name), c.get(output.name)) for _, p, c in pairs]
        if any(ours is None or theirs is None for ours, theirs in sides):
            continue
        ours = _joined([s[0] for s in sides])
        theirs = _joined([s[1] for s in sides])
        rows = len(ours)
        if ours.shape != theirs.shape:
            # A candidate with another output shape disagrees on every row.
            labels.insert(0, np.zeros(rows, dtype=np.bool_))
        elif compared_as(ours.dtype, output.kind) == "label":
            labels.append(rows_equal(ours, theirs))
        else:
            gaps = element_differences(ours, theirs)
            finite = np.isfinite(gaps)
            finite_rows[output.name] = (
                np.where(finite, gaps, 0.0).sum(axis=1),
                finite.sum(axis=1),
            )
            close.append(gaps.max(axis=1, initial=0.0) <= tolerance)
    agreeing = rows_agree(labels, close)
    if rows == 0 or agreeing is None:
        return []
    if rows_each is None:
        rows_each = [rows]
    # Every pair has rows (``_stacking``), so each segment is non-empty.
    starts = np.cumsum([0, *rows_each[:-1]])
    agree_each = np.add.reduceat(agreeing.astype(np.int64), starts).tolist()
    sums_each = {
        name: (np.add.reduceat(sums, starts).tolist(), np.add.reduceat(counts, starts).tolist())
        for name, (sums, counts) in finite_rows.items()
    }
    return [
        (
            size,
            agree_each[i],
            {name: (sums[i], counts[i]) for name, (sums, counts) in sums_each.items()},
        )
        for i, size in enumerate(rows_each)
    ]


def _joined(arrays: list[Any]) -> Any:
    return np.concatenate(arrays) if len(arrays) > 1 else arrays[0]
