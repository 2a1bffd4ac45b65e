"""Judging real shadow evidence against the promotion criteria."""

from __future__ import annotations

import pytest

from keel.logstore.records import CandidateStatus
from keel.settings import PromotionCriteria
from keel.shadow.promotion import judge, promotion_reason
from keel.shadow.report import ShadowReport, build_report
from shadow.shadow_traffic import ModelPair, run_traffic

CRITERIA = (
    "min_mirrored",
    "min_hours",
    "max_error_rate",
    "max_timeout_rate",
    "max_drop_rate",
    "min_agreement",
    "max_p99_ratio",
)

LENIENT = PromotionCriteria(
    min_mirrored=100,
    min_hours=1.0,
    max_error_rate=0.05,
    max_timeout_rate=0.05,
    max_drop_rate=0.05,
    min_agreement=0.9,
    max_p99_ratio=1000.0,
)


def _every_thirtieth_fails(i: int) -> CandidateStatus:
    return CandidateStatus.ERROR if i % 30 == 29 else CandidateStatus.OK


@pytest.fixture(scope="module")
def evidence(cancer: ModelPair) -> ShadowReport:
    """Two hours of traffic (120 requests a minute apart), one in thirty failing."""
    records = run_traffic(cancer, 121, status_of=_every_thirtieth_fails)
    return build_report(records, outputs=cancer.outputs)


def test_every_criterion_is_listed_with_what_was_measured(evidence: ShadowReport) -> None:
    verdict = judge(evidence, LENIENT)
    assert [c.name for c in verdict.criteria] == list(CRITERIA)
    measured = {c.name: c.measured for c in verdict.criteria}
    assert measured["min_mirrored"] == 121
    assert measured["min_hours"] == pytest.approx(2.0)
    assert measured["max_error_rate"] == pytest.approx(4 / 121)
    assert measured["max_drop_rate"] == 0.0
    assert measured["min_agreement"] == evidence.agreement
    assert measured["max_p99_ratio"] == pytest.approx(
        evidence.latency_ms["candidate"]["p99"] / evidence.latency_ms["primary"]["p99"]
    )
    assert verdict.passed, [c.describe() for c in verdict.failed]


def test_the_defaults_refuse_two_hours_of_evidence(evidence: ShadowReport) -> None:
    verdict = judge(evidence, PromotionCriteria())
    failed = {c.name for c in verdict.failed}
    assert {"min_mirrored", "min_hours", "max_error_rate", "min_agreement"} <= failed
    assert not verdict.passed
    hours = next(c for c in verdict.criteria if c.name == "min_hours")
    assert hours.describe() == "min_hours: needs >= 24 h, measured 2 h"


def test_a_figure_that_cannot_be_measured_fails(cancer: ModelPair) -> None:
    dropped = build_report(run_traffic(cancer, 20, status_of=lambda _: CandidateStatus.DROPPED))
    verdict = judge(dropped, LENIENT.model_copy(update={"min_mirrored": 0, "min_hours": 0.0}))
    unmeasured = {c.name for c in verdict.criteria if c.measured is None}
    assert unmeasured == {"max_error_rate", "max_timeout_rate", "min_agreement", "max_p99_ratio"}
    assert unmeasured <= {c.name for c in verdict.failed}
    agreement = next(c for c in verdict.criteria if c.name == "min_agreement")
    assert (
        agreement.describe() == "min_agreement: needs >= 0.9, but there is nothing to measure it on"
    )
    drop = next(c for c in verdict.criteria if c.name == "max_drop_rate")
    assert drop.measured == 1.0
    assert not drop.passed


def test_the_reason_summarises_the_evidence_and_a_forced_one_the_failures(
    evidence: ShadowReport,
) -> None:
    passed = promotion_reason(evidence, judge(evidence, LENIENT))
    assert passed.startswith("promoted on shadow evidence for ")
    assert "121 mirrored requests over 2.0 h" in passed
    assert "all 7 criteria met" in passed
    forced = promotion_reason(evidence, judge(evidence, PromotionCriteria()), "hotfix for #12")
    assert forced.startswith("forced: hotfix for #12; failed criteria: min_mirrored: needs >= 1000")
    assert "min_hours: needs >= 24 h, measured 2 h" in forced
