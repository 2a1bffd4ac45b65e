"""Judging a shadow report against the promotion criteria, criterion by criterion."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from keel.settings import PromotionCriteria
from keel.shadow.display import number
from keel.shadow.report import ShadowReport

Bound = Literal["min", "max"]


@dataclass(frozen=True)
class CriterionResult:
    """One criterion: what it requires, what the report measured, and whether that passes.

    A figure the report could not measure (no mirrored requests, no latency)
    never passes: missing evidence is not good evidence.
    """

    name: str
    bound: Bound
    required: float
    measured: float | None
    unit: str = ""

    @property
    def passed(self) -> bool:
        if self.measured is None:
            return False
        if self.bound == "min":
            return self.measured >= self.required
        return self.measured <= self.required

    def describe(self) -> str:
        """E.g. ``min_hours: needs >= 24 h, measured 2.5 h``."""
        sign = ">=" if self.bound == "min" else "<="
        unit = f" {self.unit}" if self.unit else ""
        needs = f"{self.name}: needs {sign} {number(self.required)}{unit}"
        if self.measured is None:
            return f"{needs}, but there is nothing to measure it on"
        return f"{needs}, measured {number(self.measured)}{unit}"


@dataclass(frozen=True)
class Verdict:
    """Every criterion's result; the candidate may be promoted only if all pass."""

    criteria: tuple[CriterionResult, ...]

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.criteria)

    @property
    def failed(self) -> tuple[CriterionResult, ...]:
        return tuple(c for c in self.criteria if not c.passed)


def judge(report: ShadowReport, criteria: PromotionCriteria) -> Verdict:
    """Measure each promotion criterion on ``report`` and say whether it is met."""
    rates = report.counts.rates()
    measured: list[tuple[str, Bound, float, float | None, str]] = [
        ("min_mirrored", "min", criteria.min_mirrored, report.counts.mirrored, "requests"),
        ("min_hours", "min", criteria.min_hours, report.mirrored_span_s / 3600, "h"),
        ("max_error_rate", "max", criteria.max_error_rate, rates["error"], ""),
        ("max_timeout_rate", "max", criteria.max_timeout_rate, rates["timeout"], ""),
        ("max_drop_rate", "max", criteria.max_drop_rate, rates["drop"], ""),
        ("min_agreement", "min", criteria.min_agreement, report.agreement, ""),
        ("max_p99_ratio", "max", criteria.max_p99_ratio, report.p99_ratio, "x"),
    ]
    return Verdict(
        tuple(
            CriterionResult(name, bound, float(required), value, unit)
            for name, bound, required, value, unit in measured
        )
    )


def evidence_summary(report: ShadowReport) -> str:
    """One line of the evidence, for the alias history: what was seen, over how long."""
    rates = report.counts.rates()
    figures = ", ".join(
        f"{name} {number(value)}"
        for name, value in (
            ("agreement", report.agreement),
            ("error rate", rates["error"]),
            ("timeout rate", rates["timeout"]),
            ("drop rate", rates["drop"]),
            ("p99 ratio", report.p99_ratio),
        )
    )
    return (
        f"shadow evidence for {report.candidate_version}: {report.counts.mirrored} mirrored "
        f"requests over {report.mirrored_span_s / 3600:.1f} h; {figures}"
    )


def promotion_reason(report: ShadowReport, verdict: Verdict, forced: str | None = None) -> str:
    """The alias history's reason: the evidence, and for a forced promotion why and what failed."""
    summary = evidence_summary(report)
    if forced is None:
        return f"promoted on {summary}; all {len(verdict.criteria)} criteria met"
    failed = "; ".join(c.describe() for c in verdict.failed) or "none"
    return f"forced: {forced}; failed criteria: {failed}; {summary}"
