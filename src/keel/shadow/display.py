"""How the shadow report writes figures for people: a few significant figures, no float noise."""

from __future__ import annotations

import math


def number(value: float | None, digits: int = 3) -> str:
    """A number to ``digits`` significant figures; "-" for None, NaN or infinity."""
    if value is None or not math.isfinite(value):
        return "-"
    if value == 0:
        return "0"
    magnitude = abs(value)
    if magnitude >= 1e6 or magnitude < 1e-3:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}" if magnitude < 10**digits else f"{value:.0f}"


def percent(value: float | None) -> str:
    """A share as a percentage with two decimals; "-" where there is none."""
    return "-" if value is None or not math.isfinite(value) else f"{value:.2%}"
