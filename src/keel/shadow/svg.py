"""Inline SVG drawn in Python: a canvas with a plot area, scales, axes and a legend.

Reports must open anywhere, offline, and be safe to mail around, so charts are
plain SVG markup: no JavaScript, no fonts or images to fetch. Every piece of
text goes through :func:`escape`; numbers are formatted here, never pasted raw.
"""

from __future__ import annotations

import html
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from keel.shadow.display import number

PRIMARY_COLOUR = "#2f6db5"
CANDIDATE_COLOUR = "#e0752d"
AXIS_COLOUR = "#555555"
GRID_COLOUR = "#e3e3e3"


def escape(text: object) -> str:
    """Text made safe for HTML and SVG, in element content and in quoted attributes."""
    return html.escape(str(text), quote=True)


@dataclass(frozen=True)
class Scale:
    """Maps a data interval onto a pixel interval, linearly or on log10."""

    low: float
    high: float
    start: float
    end: float
    log: bool = False

    def __call__(self, value: float) -> float:
        lo, hi, v = self.low, self.high, value
        if self.log:
            lo, hi, v = math.log10(lo), math.log10(hi), math.log10(max(v, self.low))
        share = (v - lo) / (hi - lo) if hi > lo else 0.5
        return self.start + share * (self.end - self.start)

    def ticks(self, count: int = 5) -> list[float]:
        """Round values inside the interval to label an axis with."""
        if self.log:
            return self._log_ticks(count)
        if self.high <= self.low:
            return [self.low]
        raw = (self.high - self.low) / max(count, 1)
        power = 10.0 ** math.floor(math.log10(raw))
        step = next(m * power for m in (1, 2, 2.5, 5, 10) if m * power >= raw)
        first = math.ceil(self.low / step) * step
        return [first + i * step for i in range(int((self.high - first) / step + 1e-9) + 1)]

    def _log_ticks(self, count: int) -> list[float]:
        lowest, highest = math.floor(math.log10(self.low)), math.ceil(math.log10(self.high))
        decades = [10.0**k for k in range(lowest, highest + 1) if self.low <= 10.0**k <= self.high]
        if len(decades) >= 3:
            return decades[:: math.ceil(len(decades) / count)]
        ticks = [
            m * 10.0**k
            for k in range(lowest, highest + 1)
            for m in (1.0, 2.0, 5.0)
            if self.low <= m * 10.0**k <= self.high
        ]
        return ticks[:: math.ceil(len(ticks) / count)] if ticks else [self.low, self.high]


def padded(low: float, high: float) -> tuple[float, float]:
    """An interval that is never empty, so a constant series still gets an axis."""
    if high > low:
        return low, high
    pad = max(abs(low) * 0.05, 0.5)
    return low - pad, high + pad


class Canvas:
    """One ``<svg>`` figure: a title, a plot area inside margins, and the marks drawn on it."""

    def __init__(
        self,
        title: str,
        width: int = 460,
        height: int = 300,
        margin: tuple[int, int, int, int] = (44, 16, 48, 62),
    ) -> None:
        self.title = title
        self.width = width
        self.height = height
        top, right, bottom, left = margin
        self.left, self.top = left, top
        self.right, self.bottom = width - right, height - bottom
        self._marks: list[str] = []

    def x_scale(self, low: float, high: float, *, log: bool = False) -> Scale:
        return Scale(low, high, self.left, self.right, log)

    def y_scale(self, low: float, high: float, *, log: bool = False) -> Scale:
        return Scale(low, high, self.bottom, self.top, log)

    def rect(
        self,
        x: float,
        y: float,
        w: float,
        h: float,
        fill: str,
        *,
        opacity: float = 1.0,
        tip: str = "",
    ) -> None:
        tooltip = f"<title>{escape(tip)}</title>" if tip else ""
        self._marks.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(w, 0.0):.1f}" height="{max(h, 0.0):.1f}" '
            f'fill="{fill}" fill-opacity="{opacity:.2f}">{tooltip}</rect>'
        )

    def circle(self, x: float, y: float, r: float, fill: str, *, opacity: float = 0.5) -> None:
        self._marks.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{r:.1f}" fill="{fill}" '
            f'fill-opacity="{opacity:.2f}"/>'
        )

    def line(
        self, x1: float, y1: float, x2: float, y2: float, stroke: str, *, dashed: bool = False
    ) -> None:
        dash = ' stroke-dasharray="4 3"' if dashed else ""
        self._marks.append(
            f'<path d="M{x1:.1f},{y1:.1f} L{x2:.1f},{y2:.1f}" stroke="{stroke}" fill="none"{dash}/>'
        )

    def text(
        self,
        x: float,
        y: float,
        content: str,
        *,
        anchor: str = "middle",
        size: int = 11,
        rotate: bool = False,
        fill: str = AXIS_COLOUR,
    ) -> None:
        turn = f' transform="rotate(-90 {x:.1f} {y:.1f})"' if rotate else ""
        self._marks.append(
            f'<text x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}" font-size="{size}" '
            f'fill="{fill}"{turn}>{escape(content)}</text>'
        )

    def x_axis(self, scale: Scale, label: str, form: Callable[[float], str] = number) -> None:
        self.line(self.left, self.bottom, self.right, self.bottom, AXIS_COLOUR)
        for tick in scale.ticks():
            x = scale(tick)
            self.line(x, self.bottom, x, self.bottom + 4, AXIS_COLOUR)
            self.text(x, self.bottom + 16, form(tick))
        self.text((self.left + self.right) / 2, self.height - 8, label)

    def y_axis(self, scale: Scale, label: str, form: Callable[[float], str] = number) -> None:
        self.line(self.left, self.top, self.left, self.bottom, AXIS_COLOUR)
        for tick in scale.ticks():
            y = scale(tick)
            self.line(self.left, y, self.right, y, GRID_COLOUR)
            self.text(self.left - 6, y + 4, form(tick), anchor="end")
        self.text(14, (self.top + self.bottom) / 2, label, rotate=True)

    def band_axis(self, names: Sequence[str], centres: Sequence[float], label: str) -> None:
        """Category names under the plot area, thinned so they never overlap."""
        self.line(self.left, self.bottom, self.right, self.bottom, AXIS_COLOUR)
        every = max(1, math.ceil(len(names) * 40 / max(self.right - self.left, 1)))
        for i, (name, x) in enumerate(zip(names, centres, strict=True)):
            if i % every == 0:
                self.text(x, self.bottom + 16, shorten(name, 10))
        self.text((self.left + self.right) / 2, self.height - 8, label)

    def legend(self, entries: Sequence[tuple[str, str]]) -> None:
        """Colour keys on the row under the title, right-aligned."""
        x = self.right
        for name, colour in reversed(entries):
            x -= 14 + 7 * len(name)
            self.rect(x, 24, 10, 10, colour, opacity=0.8)
            self.text(x + 14, 33, name, anchor="start")
            x -= 10

    def render(self) -> str:
        heading = (
            f'<text x="{self.left}" y="18" font-size="13" font-weight="600" fill="#222">'
            f"{escape(shorten(self.title, (self.width - self.left) // 7))}</text>"
        )
        return (
            # Inline in HTML, an <svg> needs no xmlns: the page names no URL at all.
            f'<svg width="{self.width}" height="{self.height}" '
            f'viewBox="0 0 {self.width} {self.height}" role="img" '
            f'aria-label="{escape(self.title)}">'
            f"{heading}{''.join(self._marks)}</svg>"
        )


def shorten(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters with an ellipsis, so a long label cannot overflow."""
    return text if len(text) <= limit else text[: limit - 1] + "…"
