"""The shadow report: what a candidate did with one model's mirrored traffic, as evidence.

:func:`build_report` reads plain :class:`PredictionRecord` lists, so it works the
same on a SQLite file, a PostgreSQL log or records built in a test.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from keel.errors import AmbiguousVersion, KeelError
from keel.logstore.records import CandidateInfo, CandidateStatus, PredictionRecord
from keel.registry import selects
from keel.settings import PromotionCriteria
from keel.shadow.evidence import (
    ComparedOutput,
    Disagreement,
    RowMap,
    agreeing_rows,
    compare_outputs,
    disagreements,
)
from keel.shadow.jsonable import iso_time, jsonable
from keel.signature import Output

DEFAULT_TOP = 10
DEFAULT_TOLERANCE = PromotionCriteria().score_tolerance
MIRRORED = (CandidateStatus.OK, CandidateStatus.ERROR, CandidateStatus.TIMEOUT)


@dataclass(frozen=True)
class RequestCounts:
    """Logged requests by what became of their candidate side."""

    logged: int
    ok: int
    error: int
    timeout: int
    dropped: int
    unmirrored: int

    @property
    def mirrored(self) -> int:
        """Requests the candidate was asked to answer (whatever it then did)."""
        return self.ok + self.error + self.timeout

    def rates(self) -> dict[str, float | None]:
        """Error and timeout over mirrored requests, drops over requests sampled to mirror."""
        sampled = self.mirrored + self.dropped
        return {
            "error": self.error / self.mirrored if self.mirrored else None,
            "timeout": self.timeout / self.mirrored if self.mirrored else None,
            "drop": self.dropped / sampled if sampled else None,
        }


@dataclass(frozen=True, eq=False)
class ShadowReport:
    """One candidate version against the primary, over one span of logged traffic.

    Beside the figures :meth:`to_dict` gives, it keeps the compared values and
    latencies the HTML report draws.
    """

    model: str
    candidate_version: str
    primary_versions: tuple[str, ...]
    first_at: float
    last_at: float
    mirrored_span_s: float
    counts: RequestCounts
    score_tolerance: float
    outputs: tuple[ComparedOutput, ...]
    primary_ms: npt.NDArray[np.float64]
    """Primary latency of every mirrored request."""
    candidate_ms: npt.NDArray[np.float64]
    """Candidate latency of every request it answered."""
    candidate_rss_bytes: int | None
    disagreements: tuple[Disagreement, ...]

    @property
    def agreement(self) -> float | None:
        """Label agreement of the first label output, else the share of rows within tolerance."""
        rows = agreeing_rows(self.outputs)
        return float(rows.mean()) if rows is not None and rows.size else None

    @property
    def duration_s(self) -> float:
        return self.last_at - self.first_at

    @property
    def latency_ms(self) -> dict[str, dict[str, float | None]]:
        return {
            "primary": _percentiles(self.primary_ms),
            "candidate": _percentiles(self.candidate_ms),
        }

    @property
    def p99_ratio(self) -> float | None:
        """Candidate p99 latency over the primary's; None if either is unknown or zero."""
        primary = self.latency_ms["primary"]["p99"]
        candidate = self.latency_ms["candidate"]["p99"]
        if primary is None or candidate is None or primary <= 0:
            return None
        return candidate / primary

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (no NaN: what cannot be measured is None)."""
        counts = self.counts
        document = {
            "model": self.model,
            "candidate_version": self.candidate_version,
            "primary_versions": list(self.primary_versions),
            "from": iso_time(self.first_at),
            "to": iso_time(self.last_at),
            "duration_s": self.duration_s,
            "mirrored_duration_s": self.mirrored_span_s,
            "requests": {
                "logged": counts.logged,
                "mirrored": counts.mirrored,
                "ok": counts.ok,
                "error": counts.error,
                "timeout": counts.timeout,
                "dropped": counts.dropped,
                "unmirrored": counts.unmirrored,
            },
            "rates": counts.rates(),
            "agreement": self.agreement,
            "score_tolerance": self.score_tolerance,
            "outputs": {o.name: o.to_dict() for o in self.outputs},
            "psi": {o.name: o.psi for o in self.outputs if o.psi is not None},
            "latency_ms": self.latency_ms,
            "candidate_rss_bytes": self.candidate_rss_bytes,
            "disagreements": [d.to_dict() for d in self.disagreements],
        }
        result: dict[str, Any] = jsonable(document)
        return result


def build_report(
    records: Sequence[PredictionRecord],
    candidates: Sequence[CandidateInfo] = (),
    outputs: Sequence[Output] | None = None,
    *,
    model: str | None = None,
    candidate_version: str | None = None,
    top: int = DEFAULT_TOP,
    score_tolerance: float = DEFAULT_TOLERANCE,
) -> ShadowReport:
    """Compare one candidate version with the primary over ``records``.

    ``records`` are one model's (or name it with ``model``); the candidate is
    ``candidate_version`` (a unique prefix will do) or else the one of the most
    recent records. ``outputs`` are the signature's, which say each output's kind;
    without them integer, boolean and string outputs are compared as labels and
    float outputs as scores. Unmirrored records that name no candidate count when
    they fall within the candidate's span.
    """
    if top < 0:
        raise KeelError(f"top must be zero or more, got {top}")
    if score_tolerance < 0:
        raise KeelError(f"score_tolerance must be zero or more, got {score_tolerance}")
    own = model_records(records, model)
    version = select_candidate(own, candidate_version)
    chosen = _records_of(own, version)
    ok = [r for r in chosen if r.status is CandidateStatus.OK]
    hollow = next((r for r in ok if r.candidate_output is None), None)
    if hollow is not None:
        raise KeelError(
            f"request {hollow.request_id!r} of {hollow.model} is logged as answered by the "
            "candidate but holds no candidate output: the log is inconsistent"
        )
    mirrored = [r for r in chosen if r.status in MIRRORED]
    row_map = RowMap.of(ok)
    compared = compare_outputs(ok, outputs or (), score_tolerance)
    return ShadowReport(
        model=chosen[0].model,
        candidate_version=version,
        primary_versions=tuple(dict.fromkeys(r.primary_version for r in chosen)),
        first_at=chosen[0].at,
        last_at=chosen[-1].at,
        mirrored_span_s=mirrored[-1].at - mirrored[0].at if mirrored else 0.0,
        counts=_count(chosen),
        score_tolerance=score_tolerance,
        outputs=compared,
        primary_ms=np.array([r.primary_ms for r in mirrored], dtype=np.float64),
        candidate_ms=np.array(
            [r.candidate_ms for r in ok if r.candidate_ms is not None], dtype=np.float64
        ),
        candidate_rss_bytes=_rss(candidates, chosen[0].model, version),
        disagreements=disagreements(ok, row_map, compared, top),
    )


def model_records(records: Sequence[PredictionRecord], model: str | None) -> list[PredictionRecord]:
    """The records of ``model`` (or of the one model they all belong to), oldest first."""
    if model is not None:
        own = [r for r in records if r.model == model]
        if not own:
            raise KeelError(f"the prediction log holds no records of model '{model}'")
    else:
        models = sorted({r.model for r in records})
        if not models:
            raise KeelError("the prediction log holds no records")
        if len(models) > 1:
            raise KeelError(f"the records belong to several models ({', '.join(models)}): name one")
        own = list(records)
    return sorted(own, key=lambda r: r.at)


def select_candidate(records: Sequence[PredictionRecord], requested: str | None = None) -> str:
    """The candidate version to report on: ``requested``, else the latest.

    ``requested`` may be the logged version, a unique prefix of it, or its short id.
    """
    latest = {r.candidate_version: r.at for r in records if r.candidate_version is not None}
    if not latest:
        model = records[0].model if records else "this model"
        unnamed = sum(r.status in MIRRORED for r in records)
        hint = (
            f"{unnamed} mirrored requests name no candidate version"
            if unnamed
            else "is a shadow target configured for it?"
        )
        raise KeelError(f"no logged request of {model} names a candidate version: {hint}")
    if requested is None:
        return max(latest, key=lambda v: latest[v])
    # Servers log the registry's sha/timestamp as one path segment, sha-timestamp.
    spellings = (requested, requested.replace("/", "-", 1))
    exact = [s for s in spellings if s in latest]
    if exact:
        return exact[0]
    matches = sorted(v for v in latest if selects(v, requested))
    if len(matches) > 1:
        raise AmbiguousVersion(f"candidate {requested!r} matches {', '.join(matches)}")
    if not matches:
        known = ", ".join(sorted(latest, key=lambda v: latest[v], reverse=True))
        raise KeelError(f"no records for candidate {requested!r}; the log holds: {known}")
    return matches[0]


def _records_of(records: list[PredictionRecord], version: str) -> list[PredictionRecord]:
    named = [r for r in records if r.candidate_version == version]
    first, last = named[0].at, named[-1].at
    # A request sampled out of mirroring may name no candidate; within the
    # candidate's span it is still part of the traffic the candidate did not see.
    return [
        r
        for r in records
        if r.candidate_version == version
        or (r.candidate_version is None and first <= r.at <= last and r.status not in MIRRORED)
    ]


def _count(records: Sequence[PredictionRecord]) -> RequestCounts:
    by_status = Counter(r.status for r in records)
    return RequestCounts(
        logged=len(records),
        ok=by_status[CandidateStatus.OK],
        error=by_status[CandidateStatus.ERROR],
        timeout=by_status[CandidateStatus.TIMEOUT],
        dropped=by_status[CandidateStatus.DROPPED],
        unmirrored=by_status[CandidateStatus.UNMIRRORED],
    )


def _rss(candidates: Sequence[CandidateInfo], model: str, version: str) -> int | None:
    """Memory the candidate added when it was last started (None for a remote candidate)."""
    started = [
        c
        for c in candidates
        if c.model == model and c.candidate_version == version and c.rss_bytes is not None
    ]
    return max(started, key=lambda c: c.started_at).rss_bytes if started else None


def _percentiles(values: npt.NDArray[np.float64]) -> dict[str, float | None]:
    if not values.size:
        return {"p50": None, "p99": None}
    p50, p99 = np.percentile(values, [50, 99])
    return {"p50": float(p50), "p99": float(p99)}
