"""Render the figures a reliability run measured into docs/reliability.md.

    python tests/reliability/report.py RESULTS.json [docs/reliability.md]

RESULTS.json is what a pytest session wrote with ``KEEL_RELIABILITY_RESULTS`` set. Each
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


SECTIONS: dict[str, Callable[[Cases], list[str]]] = {
    "hostile_requests": hostile_requests,
    "hostile_models": hostile_models,
}


def render(results: Mapping[str, Any], document: str) -> str:
    run = results["run"]
    for section, cases in results["sections"].items():
        table = SECTIONS.get(section)
        if table is None:
            continue
        marker = section.replace("_", "-")
        measured = (
            f"Measured {run['finished_at']} on keel {run['keel_commit']} with "
            f"`KEEL_FUZZ_EXAMPLES={run['fuzz_examples']}` (the session took {run['duration_s']} s)."
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
