"""What a benchmark that keeps its own section of docs/benchmarks.md shares: its flags, and
keeping a run (the JSON under bench/results/, the section rewritten from it)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from run import unused_results_path
from servers import BENCH

REPO = BENCH.parent

Replace = Callable[[str, dict[str, Any], Path], str]
"""Rewrites a page's section from one run's results, kept at the path given."""


def section_parser(doc: str, folder: str, rounds: int, seconds: float) -> argparse.ArgumentParser:
    """The flags every such benchmark takes; results go to ``bench/results/<folder>``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--registry", type=Path, required=True)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--seconds", type=float, default=seconds)
    parser.add_argument("--results", type=Path, default=BENCH / "results" / folder)
    parser.add_argument("--docs", type=Path, default=REPO / "docs" / "benchmarks.md")
    parser.add_argument("--no-docs", action="store_true", help="write the JSON only")
    return parser


def keep_run(args: argparse.Namespace, results: dict[str, Any], replace: Replace) -> Path:
    """Write ``results`` as that day's next JSON and, unless --no-docs, rewrite the section."""
    args.results.mkdir(parents=True, exist_ok=True)
    out = unused_results_path(args.results, results["date"])
    out.write_text(json.dumps(results, indent=1) + "\n")
    print(f"results: {out}", file=sys.stderr)
    if not args.no_docs:
        args.docs.write_text(replace(args.docs.read_text(), results, out))
        print(f"updated its section of {args.docs}", file=sys.stderr)
    return out
