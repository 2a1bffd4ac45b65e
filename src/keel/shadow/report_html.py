"""The shadow report as one self-contained HTML file: tables, inline SVG charts, inline CSS.

The file fetches nothing (its Content-Security-Policy forbids it, scripts
included), so it opens offline and can be attached to a ticket. Every string
that came from the log (request ids, label values, inputs) is escaped.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from keel.shadow.comparison import LabelComparison, ScoreComparison, label_names
from keel.shadow.display import number, percent
from keel.shadow.evidence import ComparedOutput, Disagreement
from keel.shadow.jsonable import iso_time
from keel.shadow.promotion import Verdict
from keel.shadow.report import ShadowReport
from keel.shadow.svg import CANDIDATE_COLOUR, PRIMARY_COLOUR, escape, shorten
from keel.shadow.svg_charts import Series, grouped_bars, heat_map, overlaid_histograms, scatter

# No default-src but none: an injected <img src=http://...> or <script> would be refused
# by the browser even if escaping ever failed.
POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src data:"

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; color: #222;
       margin: 24px auto; max-width: 1000px; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 32px; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 8px 0; }
th, td { border-bottom: 1px solid #e4e4e4; padding: 4px 10px; text-align: left;
         vertical-align: top; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
.pass { color: #17803d; font-weight: 600; } .fail { color: #c0312b; font-weight: 600; }
.charts { display: flex; flex-wrap: wrap; gap: 16px; }
.charts svg { border: 1px solid #eee; background: #fff; }
.note { color: #666; font-style: italic; }
code { font-size: 12px; word-break: break-all; }
"""


def render_html(report: ShadowReport, verdict: Verdict | None = None) -> str:
    """The whole report page; with ``verdict``, the promotion criteria come first."""
    title = f"Shadow report: {report.model}"
    versions = ", ".join(report.primary_versions)
    parts = [
        f"<h1>{escape(title)}</h1>",
        f'<p class="sub">candidate <code>{escape(report.candidate_version)}</code> against '
        f"primary <code>{escape(versions)}</code>, {escape(iso_time(report.first_at))} to "
        f"{escape(iso_time(report.last_at))}</p>",
    ]
    if verdict is not None:
        parts.append(_verdict_section(verdict))
    parts.append(_summary_section(report))
    for output in report.outputs:
        parts.append(_output_section(output))
    if not report.outputs:
        parts.append(
            '<p class="note">No request was answered by the candidate: nothing to compare.</p>'
        )
    parts.append(_latency_section(report))
    parts.append(_disagreement_section(report))
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f'<meta http-equiv="Content-Security-Policy" content="{POLICY}">'
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>"
        + "\n".join(parts)
        + "</body></html>\n"
    )


def _verdict_section(verdict: Verdict) -> str:
    outcome = "all criteria met" if verdict.passed else f"{len(verdict.failed)} criteria not met"
    rows = "".join(
        f"<tr><td>{escape(c.name)}</td><td>{'≥' if c.bound == 'min' else '≤'} "
        f"{escape(number(c.required))} {escape(c.unit)}</td>"
        f'<td class="n">{escape(number(c.measured))} {escape(c.unit)}</td>'
        f'<td class="{"pass" if c.passed else "fail"}">{"pass" if c.passed else "FAIL"}</td></tr>'
        for c in verdict.criteria
    )
    return (
        f"<h2>Promotion verdict: {escape(outcome)}</h2><table><tr><th>criterion</th>"
        f"<th>required</th><th>measured</th><th></th></tr>{rows}</table>"
    )


def _summary_section(report: ShadowReport) -> str:
    counts, rates, latency = report.counts, report.counts.rates(), report.latency_ms
    rss = report.candidate_rss_bytes
    rows: list[tuple[str, str]] = [
        ("requests logged", str(counts.logged)),
        (
            "mirrored (ok / error / timeout)",
            f"{counts.mirrored} ({counts.ok} / {counts.error} / {counts.timeout})",
        ),
        ("dropped / unmirrored", f"{counts.dropped} / {counts.unmirrored}"),
        (
            "span",
            f"{number(report.duration_s / 3600)} h "
            f"(mirrored {number(report.mirrored_span_s / 3600)} h)",
        ),
        ("error rate", percent(rates["error"])),
        ("timeout rate", percent(rates["timeout"])),
        ("drop rate", percent(rates["drop"])),
        ("agreement", percent(report.agreement)),
        (
            "latency p50 / p99, primary",
            f"{number(latency['primary']['p50'])} / {number(latency['primary']['p99'])} ms",
        ),
        (
            "latency p50 / p99, candidate",
            f"{number(latency['candidate']['p50'])} / {number(latency['candidate']['p99'])} ms",
        ),
        ("candidate memory", "-" if rss is None else f"{rss / 2**20:.1f} MiB"),
    ]
    rows += [(f"PSI of {o.name}", number(o.psi)) for o in report.outputs if o.psi is not None]
    body = "".join(f'<tr><th>{escape(k)}</th><td class="n">{escape(v)}</td></tr>' for k, v in rows)
    return f"<h2>Summary</h2><table>{body}</table>"


def _output_section(output: ComparedOutput) -> str:
    heading = f"<h2>Output {escape(output.name)} <small>({escape(output.kind)})</small></h2>"
    comparison = output.comparison
    if comparison is None:
        return f'{heading}<p class="note">Not compared: {escape(output.problem or "")}</p>'
    if isinstance(comparison, LabelComparison):
        return heading + _label_charts(output, comparison)
    return heading + _score_charts(output, comparison)


def _label_charts(output: ComparedOutput, comparison: LabelComparison) -> str:
    names = label_names(comparison.categories, output.labels) or [
        str(c) for c in comparison.categories
    ]
    stats = (
        f"<p>{output.rows} rows; same label in {escape(percent(comparison.agreement))}; "
        f"PSI {escape(number(comparison.psi))}</p>"
    )
    bars = grouped_bars(
        f"{output.name}: labels given",
        names,
        [
            Series("primary", comparison.confusion.sum(axis=1), PRIMARY_COLOUR),
            Series("candidate", comparison.confusion.sum(axis=0), CANDIDATE_COLOUR),
        ],
    )
    matrix = heat_map(f"{output.name}: confusion", names, comparison.confusion, PRIMARY_COLOUR)
    return stats + _charts(bars, matrix)


def _score_charts(output: ComparedOutput, comparison: ScoreComparison) -> str:
    primary, candidate, which = _plotted_column(output)
    stats = (
        f"<p>{output.rows} rows; within tolerance {escape(percent(comparison.agreement))}; "
        f"mean |difference| {escape(number(comparison.mean_abs_diff))}, "
        f"p99 {escape(number(comparison.p99_abs_diff))}, "
        f"max {escape(number(comparison.max_abs_diff))}; "
        f"correlation {escape(', '.join(number(c) for c in comparison.correlation))}; "
        f"PSI {escape(number(comparison.psi))}</p>"
    )
    histograms = overlaid_histograms(
        f"{which}: distribution",
        [
            Series("primary", primary, PRIMARY_COLOUR),
            Series("candidate", candidate, CANDIDATE_COLOUR),
        ],
        which,
    )
    points = scatter(
        f"{which}: candidate vs primary",
        primary,
        candidate,
        "primary",
        "candidate",
        CANDIDATE_COLOUR,
    )
    return stats + _charts(histograms, points)


def _plotted_column(
    output: ComparedOutput,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], str]:
    """What a chart of a float output shows: the value, the positive class, the top class.

    Two columns of class probabilities mirror each other, so the second (the
    positive class) says it all. With more classes, each row's probability of
    the class the primary chose shows whether the candidate is as sure of it;
    other vectors are drawn element by element.
    """
    rows = output.primary.shape[0]
    primary = np.asarray(output.primary, dtype=np.float64).reshape(rows, -1)
    candidate = np.asarray(output.candidate, dtype=np.float64).reshape(rows, -1)
    width = primary.shape[1]
    if width == 1:
        return primary[:, 0], candidate[:, 0], output.name
    if width == 2:
        label = output.labels[1] if output.labels and len(output.labels) == 2 else "1"
        return primary[:, 1], candidate[:, 1], f"{output.name}[{label}]"
    if output.kind == "probability":
        top = np.argmax(np.where(np.isnan(primary), -np.inf, primary), axis=1)
        picked = np.arange(rows), top
        return primary[picked], candidate[picked], f"{output.name}[primary's class]"
    return primary.ravel(), candidate.ravel(), f"{output.name} (all {width} elements)"


def _latency_section(report: ShadowReport) -> str:
    chart = overlaid_histograms(
        "latency",
        [
            Series("primary", report.primary_ms, PRIMARY_COLOUR),
            Series("candidate", report.candidate_ms, CANDIDATE_COLOUR),
        ],
        "milliseconds",
        skewed=True,
    )
    return "<h2>Latency</h2>" + _charts(chart)


def _disagreement_section(report: ShadowReport) -> str:
    if not report.disagreements:
        return '<h2>Disagreements</h2><p class="note">No compared row disagrees.</p>'
    names = [o.name for o in report.outputs if o.comparison is not None]
    head = "".join(
        f"<th>{escape(h)}</th>" for h in ("request", "row", "time", "difference", *names, "input")
    )
    rows = "".join(_disagreement_row(d, names) for d in report.disagreements)
    return (
        f"<h2>Largest disagreements ({len(report.disagreements)})</h2>"
        f"<table><tr>{head}</tr>{rows}</table>"
    )


def _disagreement_row(disagreement: Disagreement, names: list[str]) -> str:
    cells = [
        f"<code>{escape(disagreement.request_id)}</code>",
        str(disagreement.row),
        escape(iso_time(disagreement.at)),
        escape(number(disagreement.difference)),
    ]
    for name in names:
        primary, candidate = disagreement.outputs.get(name, (None, None))
        cells.append(f"{_value(primary)} → {_value(candidate)}")
    if disagreement.inputs is not None:
        shown = "; ".join(f"{k}={_value(v, 400)}" for k, v in disagreement.inputs.items())
        cells.append(f"<details><summary>input</summary><code>{shown}</code></details>")
    else:
        cells.append(f"<code>sha256 {escape(disagreement.input_hash or '-')}</code>")
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _value(value: object, limit: int = 80) -> str:
    """A JSON value, numbers rounded, escaped and cut to ``limit`` characters."""
    if isinstance(value, float):
        text = number(value)
    elif isinstance(value, list):
        text = "[" + ", ".join(number(v) if isinstance(v, float) else str(v) for v in value) + "]"
    else:
        text = str(value)
    return escape(shorten(text, limit))


def _charts(*charts: str | None) -> str:
    drawn = [c for c in charts if c is not None]
    if not drawn:
        return '<p class="note">Nothing to draw.</p>'
    return '<div class="charts">' + "".join(drawn) + "</div>"
