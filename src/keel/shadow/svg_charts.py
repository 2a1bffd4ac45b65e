"""The shadow report's charts: overlaid histograms, grouped bars, a scatter and a heat map."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.shadow.display import number
from keel.shadow.svg import Canvas, padded, shorten

HISTOGRAM_BINS = 30
SCATTER_POINTS = 2000
"""Most points a scatter draws: past a few thousand, circles only hide each other."""
HEAT_MAP_NUMBERS = 12
"""Largest matrix whose cells are labelled with their counts."""


@dataclass(frozen=True, eq=False)
class Series:
    """One side's values in a chart, with its name and colour."""

    name: str
    values: npt.NDArray[Any]
    colour: str


def overlaid_histograms(
    title: str, series: Sequence[Series], x_label: str, *, skewed: bool = False
) -> str | None:
    """Each series' distribution over shared bins, as shares of its rows; None without data.

    ``skewed`` positive values (latencies) spanning more than a decade are binned
    on a log scale, where both their bulk and their tail show.
    """
    finite = [s.values[np.isfinite(s.values)].astype(np.float64) for s in series]
    pooled = np.concatenate(finite) if finite else np.empty(0)
    if pooled.size == 0:
        return None
    low, high = padded(float(pooled.min()), float(pooled.max()))
    log = skewed and low > 0 and high / low > 10
    edges = (
        np.geomspace(low, high, HISTOGRAM_BINS + 1)
        if log
        else np.linspace(low, high, HISTOGRAM_BINS + 1)
    )
    shares = [np.histogram(v, edges)[0] / max(v.size, 1) for v in finite]
    canvas = Canvas(title)
    x = canvas.x_scale(low, high, log=log)
    y = canvas.y_scale(0.0, max(float(max(s.max() for s in shares)), 1e-9) * 1.05)
    canvas.y_axis(y, "share of rows")
    for one, share in zip(series, shares, strict=True):
        for left, right, value in zip(edges[:-1], edges[1:], share, strict=True):
            if value > 0:
                tip = f"{one.name}: {value:.1%} in ({number(left)}, {number(right)}]"
                canvas.rect(
                    x(left),
                    y(value),
                    x(right) - x(left),
                    y(0) - y(value),
                    one.colour,
                    opacity=0.45,
                    tip=tip,
                )
    canvas.x_axis(x, x_label)
    canvas.legend([(s.name, s.colour) for s in series])
    return canvas.render()


def grouped_bars(
    title: str, categories: Sequence[str], series: Sequence[Series], y_label: str = "rows"
) -> str | None:
    """Counts per category, one bar per series side by side; None without categories."""
    if not categories:
        return None
    canvas = Canvas(title)
    top = max(float(max(np.max(s.values) for s in series)), 1.0)
    y = canvas.y_scale(0.0, top * 1.05)
    canvas.y_axis(y, y_label)
    band = (canvas.right - canvas.left) / len(categories)
    bar = band * 0.8 / len(series)
    for i, category in enumerate(categories):
        for j, one in enumerate(series):
            value = float(one.values[i])
            left = canvas.left + i * band + band * 0.1 + j * bar
            canvas.rect(
                left,
                y(value),
                bar,
                y(0) - y(value),
                one.colour,
                opacity=0.85,
                tip=f"{one.name} {category}: {value:.0f}",
            )
    centres = [canvas.left + (i + 0.5) * band for i in range(len(categories))]
    canvas.band_axis(categories, centres, "label")
    canvas.legend([(s.name, s.colour) for s in series])
    return canvas.render()


def scatter(
    title: str,
    x_values: npt.NDArray[Any],
    y_values: npt.NDArray[Any],
    x_label: str,
    y_label: str,
    colour: str,
) -> str | None:
    """Candidate against primary, one point per row (a seeded sample past the limit).

    The dashed diagonal is where the two agree exactly.
    """
    px = np.asarray(x_values, dtype=np.float64)
    py = np.asarray(y_values, dtype=np.float64)
    keep = np.isfinite(px) & np.isfinite(py)
    px, py = px[keep], py[keep]
    if px.size == 0:
        return None
    if px.size > SCATTER_POINTS:
        chosen = np.sort(np.random.default_rng(0).choice(px.size, SCATTER_POINTS, replace=False))
        px, py = px[chosen], py[chosen]
    low, high = padded(float(min(px.min(), py.min())), float(max(px.max(), py.max())))
    canvas = Canvas(title, height=340)
    x = canvas.x_scale(low, high)
    y = canvas.y_scale(low, high)
    canvas.y_axis(y, y_label)
    canvas.x_axis(x, x_label)
    canvas.line(x(low), y(low), x(high), y(high), "#999999", dashed=True)
    for a, b in zip(px, py, strict=True):
        canvas.circle(x(float(a)), y(float(b)), 2.5, colour, opacity=0.45)
    return canvas.render()


def heat_map(
    title: str, names: Sequence[str], matrix: npt.NDArray[np.int64], colour: str
) -> str | None:
    """A confusion matrix: rows the primary's label, columns the candidate's; darker is more."""
    if not names:
        return None
    size = len(names)
    canvas = Canvas(title, width=460, height=420, margin=(30, 16, 58, 86))
    cell = min((canvas.right - canvas.left) / size, (canvas.bottom - canvas.top) / size)
    peak = max(int(matrix.max()), 1)
    for i in range(size):
        for j in range(size):
            count = int(matrix[i, j])
            # A faint floor keeps empty cells visible as the grid they are.
            shade = 0.04 + 0.96 * count / peak
            left, top = canvas.left + j * cell, canvas.top + i * cell
            canvas.rect(
                left,
                top,
                cell - 1,
                cell - 1,
                colour,
                opacity=shade,
                tip=f"primary {names[i]}, candidate {names[j]}: {count}",
            )
            if size <= HEAT_MAP_NUMBERS:
                ink = "#ffffff" if shade > 0.55 else "#222222"
                canvas.text(left + cell / 2, top + cell / 2 + 4, str(count), size=10, fill=ink)
    for k, name in enumerate(names):
        every = max(1, size // 15)
        if k % every:
            continue
        canvas.text(
            canvas.left - 6, canvas.top + (k + 0.5) * cell + 4, shorten(name, 10), anchor="end"
        )
        canvas.text(canvas.left + (k + 0.5) * cell, canvas.top + size * cell + 14, shorten(name, 6))
    canvas.text(canvas.left + size * cell / 2, canvas.top + size * cell + 34, "candidate's label")
    canvas.text(16, canvas.top + size * cell / 2, "primary's label", rotate=True)
    return canvas.render()
