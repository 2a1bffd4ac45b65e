"""Render the figures a reliability run measured into docs/reliability.md.

    python tests/reliability/report.py RESULTS.json [docs/reliability.md]

RESULTS.json is what a pytest session wrote with ``RELIABILITY_RESULTS`` set. Each
section of the document this script owns lies between ``<!-- NAME:begin -->`` and
``<!-- NAME:end -->`` and is replaced whole; everything else is left as it is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from figures import read_results

DOCUMENT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
Cases = Mapping[str, Mapping[str, int]]


def hostile_requests(cases: Cases) -> list[str]:
    columns = ("tried", "refused", "accepted", "deadline_504", "server_errors", "hangs")
    lines = [
        "| Case | Requests | Refused (4xx) | Served (valid after all) | 504 (client's deadline) "
        "| 5xx | Hangs |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    totals = dict.fromkeys(columns, 0)
    for case in sorted(cases):
        counts = cases[case]
        for column in columns:
            totals[column] += counts.get(column, 0)
        lines.append(f"| {case} | " + " | ".join(str(counts.get(c, 0)) for c in columns) + " |")
    lines.append("| **all** | " + " | ".join(f"**{totals[c]}**" for c in columns) + " |")
    return lines


MODEL_COLUMNS = (
    ("refused_by_publish", "`keel publish`"),
    ("refused_by_server", "`keel serve` load"),
    ("refused_by_verify", "`keel verify`"),
    ("refused_by_registry", "registry read"),
)


def hostile_models(cases: Cases) -> list[str]:
    header = " | ".join(title for _, title in MODEL_COLUMNS)
    lines = [
        f"| Case | {header} | Planted code run |",
        "| --- |" + " :---: |" * len(MODEL_COLUMNS) + " ---: |",
    ]
    refusals = {key: 0 for key, _ in MODEL_COLUMNS}
    ran = 0
    for case in sorted(cases):
        counts = cases[case]
        cells = []
        for key, _ in MODEL_COLUMNS:
            if key not in counts:
                cells.append("–")
            else:
                cells.append("refused" if counts[key] else "**accepted**")
                refusals[key] += counts[key]
        ran += counts.get("planted_code_run", 0)
        lines.append(
            f"| {case} | " + " | ".join(cells) + f" | {counts.get('planted_code_run', 0)} |"
        )
    total = " | ".join(f"**{refusals[key]} refused**" for key, _ in MODEL_COLUMNS)
    lines.append(f"| **{len(cases)} cases** | {total} | **{ran}** |")
    return lines


# One row per measure, one column per case: each case is a different kind of model.
OVERLOAD_ROWS = (
    ("seconds", "held for (s)"),
    ("capacity_rps", "capacity: 200s/s of a 4-connection closed loop"),
    ("offered_rps", "offered (req/s, open loop)"),
    ("offered", "requests offered"),
    ("accepted", "accepted (200)"),
    ("shed", "shed (503)"),
    ("shed_without_retry_after", "503 without Retry-After"),
    ("other_statuses", "any other answer"),
    ("unanswered", "sent, never answered"),
    ("unsent", "due, never sent (clients' backlog)"),
    ("accepted_p99_us", "p99 of the 200s (ms, from when due)"),
    ("shed_p99_us", "p99 of the 503s (ms, from when due)"),
    ("shed_response_p99_us", "p99 of the 503s (ms, from when sent)"),
    ("peak_connections", "client connections at the peak"),
    ("rss_before_mib", "resident memory before (MiB)"),
    ("rss_peak_mib", "resident memory at the peak (MiB)"),
    ("lone_before_us", "a lone request before, p50 (ms)"),
    ("lone_after_us", "a lone request after, p50 (ms)"),
)


def overload(cases: Cases) -> list[str]:
    names = sorted(cases)
    lines = ["| | " + " | ".join(names) + " |", "| --- |" + " ---: |" * len(names)]
    for key, title in OVERLOAD_ROWS:
        cells = [_overload_cell(key, cases[name].get(key)) for name in names]
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    return lines


def _overload_cell(key: str, value: int | None) -> str:
    if value is None:
        return "–"
    if key.endswith("_us"):
        return f"{value / 1000:,.1f}"
    return f"{value:,}"


def faults(cases: Cases) -> list[str]:
    lines = [
        "| Fault | Requests | Failed | Also measured |",
        "| --- | ---: | ---: | --- |",
    ]
    for case in sorted(cases):
        counts = cases[case]
        extra = ", ".join(
            f"{name.replace('_', ' ')}: {value:,}"
            for name, value in counts.items()
            if name not in ("requests", "failed")
        )
        lines.append(
            f"| {case} | {counts.get('requests', 0):,} | {counts.get('failed', 0):,} | {extra} |"
        )
    return lines


def access(cases: Cases) -> list[str]:
    columns = ("tried", "refused", "let_in", "leaks")
    lines = [
        "| Case | Requests | Refused | Let in | Answers quoting a path or a stack trace |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for case in sorted(cases):
        counts = cases[case]
        lines.append(f"| {case} | " + " | ".join(str(counts.get(c, 0)) for c in columns) + " |")
    return lines


def hostile_clients(cases: Cases) -> list[str]:
    lines = ["| Attack | Measured |", "| --- | --- |"]
    for case in sorted(cases):
        measured = ", ".join(
            f"{name.replace('_', ' ')}: {value:,}" for name, value in sorted(cases[case].items())
        )
        lines.append(f"| {case} | {measured} |")
    return lines


SECTIONS: dict[str, Callable[[Cases], list[str]]] = {
    "hostile_requests": hostile_requests,
    "hostile_models": hostile_models,
    "overload": overload,
    "faults": faults,
    "access": access,
    "hostile_clients": hostile_clients,
}
# The setting that sets a section's length, and the run fact that records it.
LENGTHS = {
    "hostile_requests": ("RELIABILITY_FUZZ_EXAMPLES", "fuzz_examples"),
    "hostile_models": ("RELIABILITY_FUZZ_EXAMPLES", "fuzz_examples"),
    "overload": ("RELIABILITY_OVERLOAD_SECONDS", "overload_seconds"),
}


def render(results: Mapping[str, Any], document: str) -> str:
    run = results["run"]
    for section, cases in results["sections"].items():
        table = SECTIONS.get(section)
        if table is None:
            continue
        marker = section.replace("_", "-")
        length = ""
        if section in LENGTHS:
            variable, fact = LENGTHS[section]
            length = f" with `{variable}={run[fact]:g}`"
        measured = (
            f"Measured {run['finished_at']} on keel {run['keel_commit']}{length} "
            f"(the session took {run['duration_s']} s)."
        )
        body = "\n".join([measured, "", *table(cases)])
        begin, end = f"<!-- {marker}:begin -->", f"<!-- {marker}:end -->"
        if begin not in document or end not in document:
            raise SystemExit(f"the document has no {begin} ... {end} section")
        before, rest = document.split(begin, 1)
        after = rest.split(end, 1)[1]
        document = f"{before}{begin}\n{body}\n{end}{after}"
    return document


def main(arguments: list[str]) -> None:
    if not 1 <= len(arguments) <= 2:
        raise SystemExit(__doc__)
    target = Path(arguments[1]) if len(arguments) == 2 else DOCUMENT
    target.write_text(render(read_results(Path(arguments[0])), target.read_text()))


if __name__ == "__main__":
    main(sys.argv[1:])
