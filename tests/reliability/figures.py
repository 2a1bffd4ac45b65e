"""What the reliability suite measured, kept by section and case for ``docs/reliability.md``.

The tests add to one ``Figures`` for the whole session; when the environment variable
``RELIABILITY_RESULTS`` names a file, the session writes the figures there as
JSON, and ``tests/reliability/report.py`` renders them into the document.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

RESULTS_VARIABLE = "RELIABILITY_RESULTS"
FUZZ_EXAMPLES_VARIABLE = "RELIABILITY_FUZZ_EXAMPLES"
# Enough to meet every mutation of every strategy in CI on a shared two-core machine;
# the documented full run raises it (see docs/reliability.md).
DEFAULT_FUZZ_EXAMPLES = 60
OVERLOAD_SECONDS_VARIABLE = "RELIABILITY_OVERLOAD_SECONDS"
# Long enough for the queue to fill and shed many times over; the documented full run
# holds the overload for a minute.
DEFAULT_OVERLOAD_SECONDS = 3.0

Counts = dict[str, int]


@dataclass
class Figures:
    """Counters by section ("hostile_requests", ...) and case, plus facts about the run."""

    counts: defaultdict[str, defaultdict[str, Counts]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(dict))
    )
    run: dict[str, Any] = field(default_factory=dict)

    def add(self, section: str, case: str, **increments: int) -> None:
        """Add to the named counters of one case (missing counters start at zero)."""
        counters = self.counts[section][case]
        for name, value in increments.items():
            counters[name] = counters.get(name, 0) + value

    def to_json(self) -> dict[str, Any]:
        return {
            "run": self.run,
            "sections": {
                section: {case: dict(counters) for case, counters in cases.items()}
                for section, cases in self.counts.items()
            },
        }

    def write(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2, sort_keys=True) + "\n")


def read_results(path: Path) -> dict[str, Any]:
    """The JSON a session wrote: ``{"run": {...}, "sections": {section: {case: counters}}}``."""
    results: dict[str, Any] = json.loads(path.read_text())
    return results
